"""The Python API (speechlm.load_asr / Transcript / rescore_nbest / read_audio_input)."""
from __future__ import annotations

import doctest
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import cards_refs
from serve_helpers import tone, wav_bytes

import speechlm
from speechlm.api import AudioLimits, AudioRejected, read_audio_input
from speechlm.testing.shared_data import shared_data_dir


# ---- audio input: every refusal is an AudioRejected with its code ----------------------
@pytest.mark.parametrize("data, code", [
    (b"", "not_audio"),
    (b"hello, this is not audio at all" * 10, "not_audio"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "not_audio"),  # a WAV header cut short
    (wav_bytes(np.zeros(16000, np.float32), 16000), "silent"),
    (wav_bytes(tone(amplitude=1e-4), 16000), "silent"),
    (wav_bytes(tone(sample_rate=4000), 4000), "sample_rate"),
    (wav_bytes(tone(sample_rate=96000), 96000), "sample_rate"),
    (wav_bytes(tone(seconds=0.05), 16000), "too_short"),
    (wav_bytes(tone(seconds=3.0), 16000), "too_long"),
    (wav_bytes(tone(channels=4), 16000), "channels"),
], ids=["empty", "text", "truncated-wav", "digital-silence", "quiet", "4kHz", "96kHz",
        "50ms", "too-long", "4-channels"])
def test_bad_audio_is_rejected_with_a_reason(data, code):
    with pytest.raises(AudioRejected) as e:
        read_audio_input(data, limits=AudioLimits(max_seconds=2.0))
    assert e.value.code == code
    assert str(e.value) and "Traceback" not in str(e.value)


def test_stereo_is_mixed_or_refused():
    stereo = wav_bytes(tone(channels=2), 16000)
    samples, rate, channels = read_audio_input(stereo)
    assert (rate, channels, samples.ndim) == (16000, 2, 1)
    with pytest.raises(AudioRejected, match="2 channels") as e:
        read_audio_input(stereo, limits=AudioLimits(mix_channels=False))
    assert e.value.code == "channels"


def test_size_limit_is_checked_before_decoding():
    with pytest.raises(AudioRejected) as e:
        read_audio_input(wav_bytes(tone(), 16000), limits=AudioLimits(max_bytes=1000))
    assert e.value.code == "too_large"


def test_array_inputs():
    x = tone()
    samples, rate, _ = read_audio_input(x, 16000)
    np.testing.assert_array_equal(samples, x)
    as_int16 = (x * 32767).astype(np.int16)
    np.testing.assert_allclose(read_audio_input(as_int16, 16000)[0], x, atol=1e-4)
    channels_first = np.stack([x, x])  # (C, T) as torchaudio gives it
    assert read_audio_input(channels_first, 16000)[2] == 2
    with pytest.raises(ValueError, match="sample_rate"):
        read_audio_input(x)
    with pytest.raises(AudioRejected, match="NaN"):
        read_audio_input(np.full(16000, np.nan, np.float32), 16000)


def test_a_path_is_read_as_a_file_never_run(tmp_path):
    with pytest.raises(AudioRejected, match="no such file"):
        read_audio_input("echo hi |")
    path = tmp_path / "a.wav"
    path.write_bytes(wav_bytes(tone(), 16000))
    assert read_audio_input(path)[1] == 16000


# ---- the package face ------------------------------------------------------------------
def test_import_speechlm_stays_light():
    code = ("import sys, speechlm; heavy = [m for m in ('numpy', 'torch', 'fastapi', "
            "'gradio', 'pocketsphinx') if m in sys.modules]; print(heavy, len(speechlm.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == "[]", out
    assert 8 <= int(out[-1]) <= 14


def test_public_names_resolve():
    for name in speechlm.__all__:
        assert getattr(speechlm, name) is not None
    with pytest.raises(AttributeError):
        speechlm.no_such_name  # noqa: B018


@pytest.mark.parametrize("name", ["speechlm", "speechlm.api"])
def test_docstring_examples_run(name):
    import importlib

    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0


def test_slu_hook_says_what_is_missing(tmp_path):
    with pytest.raises((NotImplementedError, FileNotFoundError)):
        speechlm.slu(tmp_path / "no-slu-here")
    with pytest.raises(ValueError, match="input"):
        speechlm.slu(tmp_path, input="speech")


def test_slu_hook_classifies_a_transcript(tmp_path):
    slu_module = pytest.importorskip("speechlm.llm.slu")
    from speechlm.lattice import ConfusionNetwork
    from speechlm.testing.llm import save_tiny_model

    labels = ["alarm_set", "play_music", "weather_query"]
    slu_dir = tmp_path / "slu"
    slu_dir.mkdir()
    slu_module.SLUConfig(mode="icl", labels=labels, llm_path=str(save_tiny_model(tmp_path / "lm")),
                         prompt=slu_module.PromptConfig(shots=0)).save(slu_dir)
    cn = ConfusionNetwork([[("one", 0.7, 0.0, 0.3), ("two", 0.3, 0.0, 0.3)]], utt="u")
    t = speechlm.Transcript("one", (speechlm.api.Hypothesis("one", -1.0),), wcn=cn, utt="u")
    for kind in ("text", "nbest", "wcn"):
        intent_of = speechlm.slu(slu_dir, input=kind, measure_energy=False)
        assert intent_of(t) in labels
        assert intent_of("one two") in labels


# ---- PocketSphinx on the cards samples -------------------------------------------------
def test_transcript_of_a_file(ps_asr, cards):
    r = ps_asr(cards / "001.wav", utt="001")
    assert r.text == cards_refs()["001"] == "ten of clubs"
    assert r.nbest[0].text == r.text and len(r.nbest) > 1
    scores = [h.score for h in r.nbest]
    assert scores == sorted(scores, reverse=True)  # one scale for every hypothesis
    assert r.lattice is not None and r.wcn is not None
    r.wcn.check()  # every bin's posteriors sum to 1
    assert r.wcn.mbr_words() == r.text.split()
    assert [line.split()[4] for line in r.ctm] == r.text.split()
    assert all(line.startswith("001 1 ") for line in r.ctm)
    confidences = r.word_confidences()
    assert [w for w, _ in confidences] == r.text.split()
    assert all(0.5 < p <= 1.0 + 1e-9 for _, p in confidences)
    assert r.duration == pytest.approx(1.0954, abs=1e-3)
    assert (r.sample_rate, r.channels, r.model) == (16000, 1, "pocketsphinx")


def test_a_result_does_not_depend_on_earlier_calls(ps_asr, cards):
    first = ps_asr(cards / "001.wav")
    ps_asr(cards / "005.wav")
    ps_asr(cards / "002.wav")
    again = ps_asr(cards / "001.wav")
    assert again.to_json(lattice=True) == {**first.to_json(lattice=True),
                                           "decode_seconds": again.to_json()["decode_seconds"]}


def test_json_forms_are_what_speechlm_decode_writes(ps_asr, cards, tmp_path):
    from speechlm.asr.recognizer import Result
    from speechlm.bin.decode_outputs import JobWriter

    r = ps_asr(cards / "003.wav", utt="003")
    with JobWriter(tmp_path, lattice=True, refs={}) as writer:
        writer.add(Result("003", list(r.nbest), r.lattice, r.wcn))
    out = r.to_json(lattice=True)
    assert out["nbest"] == json.loads((tmp_path / "nbest.jsonl").read_text())
    assert out["wcn"] == json.loads((tmp_path / "cn.jsonl").read_text())
    assert out["ctm"] == (tmp_path / "ctm").read_text().splitlines()
    assert speechlm.api.Transcript is type(r)
    from speechlm.lattice import Lattice

    assert Lattice.from_json(out["lattice"]).best_path(am_scale=ps_asr.am_scale).words \
        == tuple(r.text.split())


def test_array_input_resampled(ps_asr, cards):
    import soundfile as sf

    from speechlm.data.audio import resample

    x, sr = sf.read(cards / "001.wav", dtype="float32")
    assert ps_asr(x, sr).text == ps_asr(cards / "001.wav").text
    at_8k = resample(x, sr, 8000)
    r = ps_asr(at_8k, 8000)
    assert r.sample_rate == 8000 and r.text  # resampled back up to the model's 16 kHz


def test_options_are_checked():
    with pytest.raises(ValueError, match="nbest"):
        speechlm.load_asr("pocketsphinx", nbest=0)
    with pytest.raises(ValueError, match="graph"):
        speechlm.load_asr("pocketsphinx", graph="somewhere")
    with pytest.raises((FileNotFoundError, ValueError)):
        speechlm.load_asr("/no/such/model/dir")


# ---- LLM -------------------------------------------------------------------------------
def test_rescore_nbest_adds_scaled_llm_scores(tiny):
    hyps = [("one two three", -1.0), ("three two one", -1.5), ("two", -4.0)]
    ranked = speechlm.rescore_nbest(tiny, hyps, llm_scale=0.3)
    llm = dict(zip([t for t, _ in hyps], tiny.score([t for t, _ in hyps], append_eos=True),
                   strict=True))
    first = dict(hyps)
    assert {r.text for r in ranked} == {t for t, _ in hyps}
    for r in ranked:
        assert r.score_of("llm") == pytest.approx(llm[r.text])
        assert r.score_of("first_pass") == first[r.text]
        assert r.score == pytest.approx(first[r.text] + 0.3 * llm[r.text])
        assert speechlm.rescored_json(r)["tot_score"] == pytest.approx(r.score, abs=1e-4)
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
    # the one formula: the CLI's sweep picks the same best hypothesis
    from speechlm.core.hypothesis import Hypothesis
    from speechlm.llm.rescore import pick_best

    nbest = {"u": [Hypothesis(t, s) for t, s in hyps]}
    assert pick_best(nbest, {"u": [llm[t] for t, _ in hyps]}, llm_scale=0.3,
                     length_bonus=0.0) == {"u": ranked[0].text}
    # with llm_scale 0 the ASR order stays
    assert [r.text for r in speechlm.rescore_nbest(tiny, hyps, llm_scale=0.0)] == \
        [t for t, _ in hyps]
    assert speechlm.rescore_nbest(tiny, []) == []


def test_load_llm_from_a_checkpoint_dir(tmp_path):
    from speechlm.testing.llm import save_tiny_model

    llm = speechlm.load_llm(save_tiny_model(tmp_path / "lm"), measure_energy=False)
    assert len(llm.score(["one two"])) == 1


# ---- a recipe model dir (local only: exp/ is not in git) -------------------------------
FSDD_EXP = "egs/fsdd/asr1/exp/asr_train_asr"


@pytest.mark.slow
def test_recipe_model_with_graph_gives_lattice_and_wcn():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / FSDD_EXP
    recordings = shared_data_dir("fsdd/recordings")
    if not (root / "model").is_dir() or not (root / "graph").is_dir() or recordings is None:
        pytest.skip(f"needs a trained {FSDD_EXP}/model + graph and shared fsdd recordings")
    asr = speechlm.load_asr(root / "model", root / "graph", nbest=3)
    r = asr(recordings / "7_george_3.wav")
    assert r.text == "seven" and r.sample_rate == 8000
    assert r.wcn is not None and r.ctm and r.ctm[0].split()[4] == "seven"
    beam = speechlm.load_asr(root / "model", nbest=3)(recordings / "7_george_3.wav")
    assert beam.text == "seven" and beam.wcn is None and beam.ctm == []
