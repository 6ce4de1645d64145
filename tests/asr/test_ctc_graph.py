"""TLG graphs for CTC: the topology's collapse rule, the lexicon, the n-gram, decoding."""
import kaldi_decoder
import kaldifst
import numpy as np
import pytest

from speechlm.asr.ctc_graph import DecodingGraph, Lexicon, build_graph
from speechlm.asr.ngram import write_arpa

TOKENS = ["<blank>", "<unk>", "<space>", "n", "o", "t"]


def frames(*tokens, peak=0.0, floor=-8.0):
    """(T, V) log-probs with one confident token per frame."""
    logp = np.full((len(tokens), len(TOKENS)), floor, dtype=np.float32)
    for t, tok in enumerate(tokens):
        logp[t, TOKENS.index(tok)] = peak
    return logp


def best_words(graph, logp, beam=16.0):
    dec = kaldi_decoder.LatticeSimpleDecoder(
        graph.fst, kaldi_decoder.LatticeSimpleDecoderConfig(beam=beam, lattice_beam=4.0))
    dec.decode(kaldi_decoder.DecodableCtc(logp))
    ok, best = dec.get_best_path()
    assert ok
    _, _, olabels, _ = kaldifst.get_linear_symbol_sequence(best)
    return [graph.words[o] for o in olabels]


def test_lexicon_spells_with_model_tokens():
    lex = Lexicon.from_words(["no", "on", "not", "nox", "no"], TOKENS)
    assert lex.prons == {"no": ("n", "o"), "not": ("n", "o", "t"), "on": ("o", "n")}
    assert lex.skipped == ("nox",) and lex.separator == "<space>"
    with pytest.raises(ValueError, match="no word"):
        Lexicon.from_words(["xyz"], TOKENS)


def test_decodes_words_with_separator_and_blanks():
    graph = build_graph(TOKENS, Lexicon.from_words(["no", "on", "not"], TOKENS))
    logp = frames("n", "n", "<blank>", "o", "<space>", "o", "n", "<blank>")
    assert best_words(graph, logp) == ["no", "on"]


def test_repeated_token_needs_blank_in_standard_topology():
    graph = build_graph(TOKENS, Lexicon.from_words(["noon", "non"], TOKENS))
    # "o o" without a blank collapses to one "o": the word is "non"
    assert best_words(graph, frames("n", "o", "o", "n")) == ["non"]
    assert best_words(graph, frames("n", "o", "<blank>", "o", "n")) == ["noon"]
    # the compact topology (large vocabularies) cannot tell them apart by collapse rule
    compact = build_graph(TOKENS, Lexicon.from_words(["noon", "non"], TOKENS),
                          compact_topo=True)
    assert best_words(compact, frames("n", "o", "<blank>", "o", "n")) == ["noon"]


def test_ngram_prefers_seen_word_order(tmp_path):
    arpa = write_arpa(["not on"] * 20 + ["on not"], tmp_path / "lm.arpa", order=2)
    lex = Lexicon.from_words(["not", "on"], TOKENS)
    with_lm = build_graph(TOKENS, lex, arpa=arpa)
    free = build_graph(TOKENS, lex)
    clear = frames("n", "o", "t", "<space>", "o", "n")
    assert best_words(with_lm, clear) == ["not", "on"]
    assert best_words(free, clear) == ["not", "on"]
    # "on not" is acoustically slightly better, but the LM has seen it 20x less often
    logp = frames("o", "n", "<space>", "n", "o", "t", peak=-0.1)
    logp = np.maximum(logp, frames("n", "o", "t", "<space>", "o", "n", peak=-0.5))
    assert best_words(free, logp) == ["on", "not"]
    assert best_words(with_lm, logp) == ["not", "on"]


def test_graph_round_trip(tmp_path):
    graph = build_graph(TOKENS, Lexicon.from_words(["no", "on"], TOKENS))
    graph.write(tmp_path / "g")
    again = DecodingGraph.read(tmp_path / "g")
    assert again.words == graph.words and again.tokens == graph.tokens
    assert again.lexicon.prons == graph.lexicon.prons
    assert again.lexicon.separator == "<space>"
    assert best_words(again, frames("o", "n")) == ["on"]
    (tmp_path / "g" / "lexicon.txt").unlink()
    with pytest.raises(FileNotFoundError, match="lexicon.txt"):
        DecodingGraph.read(tmp_path / "g")


def test_blank_must_be_token_zero():
    with pytest.raises(ValueError, match="<blank>"):
        build_graph(["a", "<blank>"], Lexicon(prons={"a": ("a",)}))
