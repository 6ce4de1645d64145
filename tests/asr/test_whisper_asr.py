"""Whisper backend on real English speech (catalogue models, ../shared/data samples)."""
import shutil

import numpy as np
import pytest

from speechlm.asr.whisper_asr import WhisperASR, resolve_model_dir, split_points
from speechlm.core import catalogue
from speechlm.core.wer import score_texts
from speechlm.data.audio import read_audio
from speechlm.lattice import ConfusionNetwork, cn_oracle, lattice_oracle, nbest_oracle
from speechlm.testing.shared_data import shared_data_dir

SAMPLES = shared_data_dir("english_speech_samples")
pytestmark = [
    pytest.mark.skipif(SAMPLES is None, reason="shared English samples not found"),
    pytest.mark.skipif(not catalogue.installed("whisper-tiny.en"),
                       reason="whisper-tiny.en not installed"),
]


def sphinx_refs(folder: str, listing: str) -> dict[str, tuple[np.ndarray, list[str]]]:
    """utt -> (16 kHz samples, reference words) from a Sphinx ``transcription`` file."""
    out = {}
    for line in (SAMPLES / folder / listing).read_text().splitlines():
        words = line.split()
        utt = words[-1].strip("()")
        out[utt] = (read_audio(str(SAMPLES / folder / f"{utt}.wav")),
                    [w for w in words[:-1] if w not in ("<s>", "</s>")])
    return out


@pytest.fixture(scope="module")
def asr():
    return WhisperASR("whisper-tiny.en")


def test_card_nbest_lattice_and_wcn(asr):
    x = read_audio(str(SAMPLES / "pocketsphinx_cards" / "001.wav"))
    hyps, lat = asr(x, "001")
    assert hyps[0].text == "ten of clubs"
    scores = [h.score for h in hyps]
    assert scores == sorted(scores, reverse=True) and all(s < 0 for s in scores)
    assert len({h.text for h in hyps}) == len(hyps)
    # the lattice's paths are the N-best with their scores; its best path is the 1-best
    paths = lat.nbest(10)
    assert [p.text for p in paths] == [h.text for h in hyps]
    assert [p.tot_score for p in paths] == pytest.approx(scores, abs=1e-4)
    # word times from the alignment: ordered, inside the audio
    times = asr.word_times(lat)
    assert [w for w, _, _ in times] == ["ten", "of", "clubs"]
    starts = [s for _, s, _ in times]
    assert starts == sorted(starts) and times[-1][2] <= len(x) / 16000 + 0.05
    cn = ConfusionNetwork.from_lattice(lat, am_scale=asr.posterior_am_scale)
    cn.check()
    assert cn.mbr_words() == ["ten", "of", "clubs"]


def test_bad_models_and_audio(asr, tmp_path):
    with pytest.raises(catalogue.UnknownModel, match="whisper-tiny.en"):
        WhisperASR("whisper-tinyy")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "model.bin").write_bytes(b"\0" * 64)
    with pytest.raises(catalogue.ModelFileError, match="config.json"):
        resolve_model_dir(partial)
    for f in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(asr.path / f, partial / f)
    with pytest.raises(catalogue.ModelFileError, match="model.bin"):
        WhisperASR(partial)  # a truncated model.bin is an error, never another model
    with pytest.raises(ValueError, match="nbest"):
        WhisperASR("whisper-tiny.en", nbest=6, beam_size=5)
    with pytest.raises(ValueError, match="English-only"):
        WhisperASR("whisper-tiny.en", language="fr")
    with pytest.raises(ValueError, match="'empty'"):
        asr(np.zeros(0, np.float32), "empty")
    with pytest.raises(ValueError, match="'nan'"):
        asr(np.full(1600, np.nan, np.float32), "nan")


def test_split_points_cover_the_signal_at_quiet_places():
    rng = np.random.default_rng(0)
    x = rng.normal(size=16000 * 70).astype(np.float32)
    x[16000 * 25: 16000 * 25 + 800] = 0  # a quiet 50 ms at 25 s
    segs = split_points(x, 16000)
    assert segs[0][0] == 0 and segs[-1][1] == len(x)
    assert all(a[1] == b[0] for a, b in zip(segs, segs[1:], strict=False))
    assert all(e - s <= 16000 * 30 for s, e in segs)
    assert abs(segs[0][1] - (16000 * 25 + 400)) < 160
    assert split_points(x[:16000 * 30], 16000) == [(0, 16000 * 30)]


@pytest.mark.slow
def test_wer_on_cards_and_librivox(asr):
    for folder, listing, max_wer in (("pocketsphinx_cards", "cards.transcription", 30.0),
                                     ("pocketsphinx_librivox", "transcription", 15.0)):
        data = sphinx_refs(folder, listing)
        ref = {u: r for u, (_, r) in data.items()}
        out = asr.decode_batch([x for x, _ in data.values()], list(data))
        hyp = {u: hs[0].text.split() for u, (hs, _) in zip(data, out, strict=True)}
        stats = score_texts(ref, hyp, normalize=True)
        assert stats.wer < max_wer, (folder, stats.wer, hyp)
        # oracles can only do better than the 1-best
        for u, (hs, lat) in zip(data, out, strict=True):
            e1 = score_texts({u: ref[u]}, {u: hyp[u]}).errors
            assert nbest_oracle([h.text.split() for h in hs], ref[u])[0] <= e1
            assert lattice_oracle(lat, ref[u])[0] <= e1
            cn = ConfusionNetwork.from_lattice(lat, am_scale=asr.posterior_am_scale)
            assert cn_oracle(cn, ref[u])[0] <= e1


@pytest.mark.slow
def test_batch_equals_single(asr):
    data = sphinx_refs("pocketsphinx_cards", "cards.transcription")
    xs = [x for x, _ in data.values()]
    batched = asr.decode_batch(xs, list(data))
    for x, u, (hb, lb) in zip(xs, data, batched, strict=True):
        hs, ls = asr(x, u)
        assert [h.text for h in hs] == [h.text for h in hb]
        assert [h.score for h in hs] == pytest.approx([h.score for h in hb], abs=1e-3)
        assert ls.num_arcs == lb.num_arcs


@pytest.mark.slow
def test_audio_over_30s_is_segmented_not_truncated(asr):
    # librivox (24.7 s) then the cards (9.7 s): 34 s, one utterance
    books = sphinx_refs("pocketsphinx_librivox", "transcription")
    cards = sphinx_refs("pocketsphinx_cards", "cards.transcription")
    parts = list(books.values()) + list(cards.values())
    x = np.concatenate([p[0] for p in parts])
    ref = [w for p in parts for w in p[1]]
    assert len(x) > 30 * 16000
    hyps, lat = asr(x, "long")
    words = hyps[0].text.split()
    assert words[-3:] == ["seven", "of", "hearts"]  # the end of the audio is decoded
    assert score_texts({"l": ref}, {"l": words}).wer < 20.0
    times = asr.word_times(lat)
    assert [w for w, _, _ in times] == words
    assert times[-1][1] > 30.0 and times[-1][2] <= len(x) / 16000 + 0.05
    assert len(lat.nbest(3)) >= 1


@pytest.mark.slow
def test_scores_are_total_log_probabilities():
    # length_penalty=0 makes CTranslate2 return the unnormalised sum; our total from the
    # length-normalised scores must equal it for the same text
    x = read_audio(str(SAMPLES / "pocketsphinx_cards" / "005.wav"))
    norm = WhisperASR("whisper-tiny.en", normalize=False)
    raw = WhisperASR("whisper-tiny.en", normalize=False, length_penalty=0.0)
    a = {h.text: h.score for h in norm(x)[0]}
    b = {h.text: h.score for h in raw(x)[0]}
    common = set(a) & set(b)
    assert common
    for t in common:
        assert a[t] == pytest.approx(b[t], abs=1e-3)


@pytest.mark.slow
def test_whisper_base_on_cards():
    if not catalogue.installed("whisper-base"):
        pytest.skip("whisper-base not installed")
    asr = WhisperASR("whisper-base", language="en")
    data = sphinx_refs("pocketsphinx_cards", "cards.transcription")
    out = asr.decode_batch([x for x, _ in data.values()], list(data))
    hyp = {u: hs[0].text.split() for u, (hs, _) in zip(data, out, strict=True)}
    assert score_texts({u: r for u, (_, r) in data.items()}, hyp).wer < 30.0


def test_decode_cli_and_api_give_the_same_whisper_nbest(tmp_path):
    """`speechlm decode --backend whisper` (batched) and load_asr go through one Recognizer."""
    import subprocess
    import sys

    from speechlm.api import load_asr
    from speechlm.core.nbest_jsonl import read_nbest_jsonl

    cards = sorted((SAMPLES / "pocketsphinx_cards").glob("*.wav"))[:3]
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text("".join(f"{p.stem} {p}\n" for p in cards))
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "speechlm.bin.decode", "--backend", "whisper",
                        "--nbest", "3", "--batch-size", "2", "--lattice", "--data-dir",
                        str(data), "--out", str(out)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    cli = read_nbest_jsonl(out / "nbest.jsonl")
    asr = load_asr("whisper-tiny.en", nbest=3)
    api = asr.transcribe([str(p) for p in cards], utts=[p.stem for p in cards], batch_size=1)
    for t in api:
        assert [h.text for h in cli[t.utt]] == [h.text for h in t.nbest]
        assert [h.score for h in cli[t.utt]] == pytest.approx([h.score for h in t.nbest],
                                                              abs=2e-3)
    assert (out / "ctm").read_text().split()[4] in api[0].text.split()
