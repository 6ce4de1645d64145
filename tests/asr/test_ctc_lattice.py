"""CTC log-probs -> kaldi-decoder -> word lattice with word times (no ESPnet model needed)."""
import kaldi_decoder
import kaldifst
import numpy as np
import pytest

from speechlm.asr.ctc_graph import Lexicon, build_graph
from speechlm.asr.ctc_lattice import LatticeDecodeConfig, decode_logprobs

TOKENS = ["<blank>", "<unk>", "<space>", "n", "o", "t"]
SHIFT = 0.04


def frames(*tokens, peak=-0.05, floor=-6.0):
    logp = np.full((len(tokens), len(TOKENS)), floor, dtype=np.float32)
    for t, tok in enumerate(tokens):
        logp[t, TOKENS.index(tok)] = peak
    return logp


@pytest.fixture(scope="module")
def graph():
    return build_graph(TOKENS, Lexicon.from_words(["no", "on", "not", "to"], TOKENS))


def test_best_path_is_the_decoders(graph):
    rng = np.random.default_rng(0)
    for _ in range(5):
        logp = np.log(rng.dirichlet(np.ones(len(TOKENS)) * 0.3, size=12)).astype(np.float32)
        config = LatticeDecodeConfig(beam=20, lattice_beam=10)
        lat = decode_logprobs(graph, logp, utt="r", frame_shift=SHIFT, config=config)
        dec = kaldi_decoder.LatticeSimpleDecoder(
            graph.fst, kaldi_decoder.LatticeSimpleDecoderConfig(beam=20, lattice_beam=10))
        dec.decode(kaldi_decoder.DecodableCtc(logp))
        _, best = dec.get_best_path()
        _, _, olabels, _ = kaldifst.get_linear_symbol_sequence(best)
        assert lat.best_path().words == tuple(graph.words[o] for o in olabels)


def test_word_times_span_their_frames(graph):
    # blank blank n n o <space> o n blank blank
    logp = frames("<blank>", "<blank>", "n", "n", "o", "<space>", "o", "n", "<blank>",
                  "<blank>")
    lat = decode_logprobs(graph, logp, utt="u", frame_shift=SHIFT,
                          config=LatticeDecodeConfig())
    best = lat.best_path()
    assert best.words == ("no", "on")
    assert best.starts == pytest.approx((2 * SHIFT, 6 * SHIFT))
    # a word ends after its last non-blank frame; the separator belongs to no word
    assert best.ends == pytest.approx((5 * SHIFT, 8 * SHIFT))
    # lattices keep unscaled scores: the path's acoustic score is the sum of log-probs
    assert best.am_score == pytest.approx(float(logp.max(axis=1).sum()), abs=1e-3)


def test_lm_scale_is_undone_in_the_lattice(graph):
    logp = frames("n", "o", "t")
    lat1 = decode_logprobs(graph, logp, utt="u", frame_shift=SHIFT,
                           config=LatticeDecodeConfig(lm_scale=1.0))
    lat2 = decode_logprobs(graph, logp, utt="u", frame_shift=SHIFT,
                           config=LatticeDecodeConfig(lm_scale=2.0))
    assert lat1.best_path().am_score == pytest.approx(lat2.best_path().am_score, abs=1e-3)


def test_bad_input(graph):
    config = LatticeDecodeConfig()
    with pytest.raises(ValueError, match="utt7.*shape"):
        decode_logprobs(graph, np.zeros((4, 3), np.float32), utt="utt7", frame_shift=SHIFT,
                        config=config)
    bad = frames("n", "o")
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="utt8.*NaN"):
        decode_logprobs(graph, bad, utt="utt8", frame_shift=SHIFT, config=config)
    with pytest.raises(ValueError, match="lm_scale"):
        LatticeDecodeConfig(lm_scale=0)
    with pytest.raises(ValueError, match="unknown lattice option"):
        LatticeDecodeConfig.from_dict({"beem": 3})
