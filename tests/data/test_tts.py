"""Tests for espeak-ng and Piper synthesis (speechlm.data.tts) and the synth_data_dir CLI."""

import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechlm.bin import synth_data_dir
from speechlm.core import catalogue
from speechlm.data.kaldi_dir import validate_data_dir
from speechlm.data.tts import (
    EspeakSynthesizer,
    EspeakVoice,
    PiperSynthesizer,
    PiperVoice,
    SynthesisError,
    Synthesizer,
    augment,
    list_english_voices,
    list_variants,
    parse_voice,
    piper_renditions,
    sample_voices,
)


@pytest.fixture(scope="module")
def synth():
    return EspeakSynthesizer(sample_rate=16000)


def _rms(x):
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def test_bundled_voices_and_variants():
    voices = list_english_voices()
    assert {"en-us", "en-gb", "en-gb-scotland", "en-029"} <= set(voices)
    assert voices == sorted(voices) and all(v.startswith("en") for v in voices)
    assert {"m3", "f2", "klatt2", "whisper"} <= set(list_variants())


def test_synthesize_is_speech_like(synth):
    short, sr = synth.synthesize("seven", EspeakVoice("en-us"))
    long, _ = synth.synthesize("seven eight nine, turn on the kitchen lights", EspeakVoice("en-us"))
    assert sr == 16000 and short.dtype == np.float32 and short.ndim == 1
    assert 0.2 < len(short) / sr < 1.5  # one word at 175 wpm
    assert len(long) > 3 * len(short)
    assert _rms(short) > 0.01 and np.abs(short).max() <= 1.0


def test_voices_differ_and_rate_changes_duration(synth):
    text = "one two three four five"
    a, _ = synth.synthesize(text, EspeakVoice("en-us", "m3"))
    b, _ = synth.synthesize(text, EspeakVoice("en-gb-scotland", "f2"))
    assert len(a) != len(b) or not np.allclose(a, b, atol=1e-3)
    slow, _ = synth.synthesize(text, EspeakVoice("en-us", rate_wpm=100))
    fast, _ = synth.synthesize(text, EspeakVoice("en-us", rate_wpm=300))
    assert len(slow) > 2 * len(fast)
    # Same voice again: rate and pitch settings did not leak. Not bit-identical, because espeak's
    # pitch flutter is a global oscillator whose phase carries over between utterances.
    again, _ = synth.synthesize(text, EspeakVoice("en-us", "m3"))
    assert abs(len(again) - len(a)) < 0.02 * len(a)


def test_native_and_other_sample_rates(synth):
    voice = EspeakVoice("en-us")
    native, sr = EspeakSynthesizer(sample_rate=22050).synthesize("seven", voice)
    low, sr8 = EspeakSynthesizer(sample_rate=8000).synthesize("seven", voice)
    assert sr == synth.native_sample_rate == 22050 and sr8 == 8000
    assert abs(len(low) - len(native) * 8000 / 22050) <= 1


def test_bad_voice_and_text_raise(synth):
    with pytest.raises(ValueError, match="en-xx"):
        synth.synthesize("seven", EspeakVoice("en-xx"))
    with pytest.raises(ValueError, match="nosuchvariant"):
        synth.synthesize("seven", EspeakVoice("en-us", "nosuchvariant"))
    with pytest.raises(SynthesisError, match="en-us_m3"):
        synth.synthesize("", EspeakVoice("en-us", "m3"))
    for bad in ({"rate_wpm": 20}, {"pitch": 101}, {"pitch_range": -1}, {"gap": -5}):
        with pytest.raises(ValueError):
            EspeakVoice("en-us", **bad)
    with pytest.raises(ValueError):
        EspeakVoice("en-us+m3")


def test_voice_id_is_filename_safe():
    voice = EspeakVoice("en-us", "Mr serious", rate_wpm=150, pitch=40)
    assert voice.id == "en-us_Mr-serious_r150_p40_pr50_g0"
    assert EspeakVoice("en-us").id == "en-us_default_r175_p50_pr50_g0"


def test_threads_share_the_engine_safely(synth):
    voices = [EspeakVoice("en-us", "m3"), EspeakVoice("en-029", "f4", rate_wpm=140)]
    expected = [synth.synthesize("four five six", v)[0] for v in voices]
    results = {}

    def work(i):
        results[i] = [synth.synthesize("four five six", voices[i % 2])[0] for _ in range(5)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Interleaved callbacks would mix or drop chunks and change the lengths a lot.
    for i, outs in results.items():
        for out in outs:
            assert abs(len(out) - len(expected[i % 2])) < 0.02 * len(out)


def test_sample_voices_is_reproducible_and_diverse():
    a = sample_voices(40, seed=3)
    assert a == sample_voices(40, seed=3)
    assert a != sample_voices(40, seed=4)
    assert len({v.id for v in a}) == 40
    assert len({v.name for v in a}) >= 5 and len({v.variant for v in a}) >= 10
    assert all(130 <= v.rate_wpm <= 220 and 25 <= v.pitch <= 75 for v in a)
    few = sample_voices(4, 0, languages=["en-us", "en-gb"], variants=[None, "f2"])
    assert {(v.name, v.variant) for v in few} == {
        ("en-us", None), ("en-us", "f2"), ("en-gb", None), ("en-gb", "f2")
    }  # fmt: skip
    with pytest.raises(ValueError, match="en-xx"):
        sample_voices(2, 0, languages=["en-xx"])
    with pytest.raises(ValueError, match="allow only"):
        sample_voices(3, 0, languages=["en-us"], variants=[None], rate_range=(150, 150),
                      pitch_range=(50, 51))  # fmt: skip


def test_augment_is_deterministic_and_keeps_length(synth):
    x, sr = synth.synthesize("three", EspeakVoice("en-us"))
    y1 = augment(x, sr, np.random.default_rng(7), reverb_prob=1.0, snr_db_range=(20, 20))
    y2 = augment(x, sr, np.random.default_rng(7), reverb_prob=1.0, snr_db_range=(20, 20))
    np.testing.assert_array_equal(y1, y2)
    assert y1.shape == x.shape and y1.dtype == np.float32 and np.abs(y1).max() <= 1.0
    assert not np.allclose(y1, x)
    noisy = augment(x, sr, np.random.default_rng(0), reverb_prob=0.0, snr_db_range=(10, 10))
    snr = 10 * np.log10(np.mean(x**2) / np.mean((noisy - x) ** 2))
    assert abs(snr - 10) < 0.5


def _read_table(path):
    lines = path.read_text().splitlines()
    assert lines == sorted(lines, key=str.encode), f"{path.name} is not LC_ALL=C sorted"
    return dict(line.split(maxsplit=1) for line in lines)


def test_cli_writes_valid_data_dir(tmp_path):
    text = tmp_path / "digits.txt"
    text.write_text("seven\n\ntwo three\nnine\n")
    out = tmp_path / "data"
    assert synth_data_dir.main(["--text", str(text), "--num-voices", "3", "--out", str(out)]) == 0

    wav_scp, texts = _read_table(out / "wav.scp"), _read_table(out / "text")
    utt2spk, spk2utt = _read_table(out / "utt2spk"), _read_table(out / "spk2utt")
    utt2dur = _read_table(out / "utt2dur")
    assert len(wav_scp) == 9 and set(wav_scp) == set(texts) == set(utt2spk) == set(utt2dur)
    assert sorted(set(texts.values())) == ["nine", "seven", "two three"]
    assert len(spk2utt) == 3
    for spk, utts in spk2utt.items():
        assert spk.startswith("synth-")
        for utt in utts.split():
            assert utt2spk[utt] == spk and utt.startswith(spk + "-")
    # spk2utt order must follow utterance order, as Kaldi's validate_data_dir.sh requires.
    assert list(dict.fromkeys(utt2spk.values())) == list(spk2utt)
    for utt, wav in wav_scp.items():
        info = sf.info(wav)
        assert (info.samplerate, info.channels) == (16000, 1)
        assert abs(info.frames / 16000 - float(utt2dur[utt])) < 1e-3


def test_cli_voices_per_line(tmp_path):
    text = tmp_path / "lines.txt"
    text.write_text("".join(f"line number {i}\n" for i in range(8)))
    out = tmp_path / "data"
    args = ["--text", str(text), "--num-voices", "4", "--voices-per-line", "1", "--out", str(out)]
    assert synth_data_dir.main(args) == 0
    texts, utt2spk = _read_table(out / "text"), _read_table(out / "utt2spk")
    assert sorted(texts.values()) == sorted(f"line number {i}" for i in range(8))
    assert len(set(utt2spk.values())) > 1  # the lines are spread over the voice pool
    assert synth_data_dir.main(args[:-3] + ["5", "--out", str(out)]) == 1  # more than the pool


def test_cli_resumes_and_rewrites(tmp_path):
    text = tmp_path / "text"
    text.write_text("utt_001 turn on the lights\nutt_002 play some music\n")  # Kaldi format
    out = tmp_path / "data"
    args = ["--text", str(text), "--num-voices", "2", "--out", str(out), "--augment"]
    assert synth_data_dir.main(args) == 0
    line_ids = sorted(u.split("-")[-1] for u in _read_table(out / "text"))
    assert line_ids == ["utt_001", "utt_001", "utt_002", "utt_002"]
    stamp = (out / "wav.scp").stat().st_mtime_ns
    assert synth_data_dir.main(args) == 0  # complete: no-op
    assert (out / "wav.scp").stat().st_mtime_ns == stamp
    old_wavs = set((out / "wav").iterdir())

    assert synth_data_dir.main(args[:-1] + ["--seed", "5"]) == 0  # new arguments: rewrite
    new_wavs = set((out / "wav").iterdir())
    assert len(new_wavs) == 4 and not (old_wavs & new_wavs)
    assert set(map(str, new_wavs)) == set(_read_table(out / "wav.scp").values())


def test_cli_snr_db_fixes_the_noise_level(tmp_path, capsys):
    text = tmp_path / "text"
    text.write_text("utt_001 turn on the lights\n")
    base = ["--text", str(text), "--voices", "espeak:en-us", "--augment", "--seed", "3"]

    def noise_power_db(snr):
        out = tmp_path / f"snr{snr}"
        assert synth_data_dir.main([*base, "--snr-db", snr, "--out", str(out)]) == 0
        y, _ = sf.read(next((out / "wav").iterdir()), dtype="float32")
        return 10 * np.log10(np.mean(y.astype(np.float64) ** 2))

    # the same utterance and seed: only the noise level differs, so the lower SNR is louder
    assert noise_power_db("-5") > noise_power_db("20") + 3
    assert synth_data_dir.main([*base, "--snr-db", "0,20", "--out", str(tmp_path / "r")]) == 0
    default = tmp_path / "default"
    assert synth_data_dir.main([*base, "--out", str(default)]) == 0
    stamp = (default / ".done").read_text()
    assert synth_data_dir.main([*base, "--snr-db", "10,30", "--out", str(default)]) == 0
    assert (default / ".done").read_text() == stamp  # the default range keeps the old marker
    assert synth_data_dir.main([*base, "--snr-db", "5", "--out", str(default)]) == 0
    assert (default / ".done").read_text() != stamp  # another SNR: another data dir
    capsys.readouterr()
    for bad in ("loud", "20,10", "1,2,3", "nan"):
        assert synth_data_dir.main([*base, "--snr-db", bad, "--out", str(tmp_path / "x")]) == 1
        assert "--snr-db" in capsys.readouterr().err
    assert synth_data_dir.main([*base[:-3], "--snr-db", "5", "--out", str(tmp_path / "y")]) == 1
    assert "--augment" in capsys.readouterr().err
    with pytest.raises(ValueError, match="snr_db_range"):
        augment(np.ones(100, np.float32), 16000, np.random.default_rng(0), snr_db_range=(9, 1))


@pytest.mark.slow
def test_cli_is_reproducible_across_processes(tmp_path):
    text = tmp_path / "text"
    text.write_text("seven\nturn off the heating\n")
    repo = Path(__file__).resolve().parents[2]
    for name in ("a", "b"):
        cmd = [sys.executable, "-m", "speechlm.bin.synth_data_dir", "--text", str(text)]
        cmd += ["--num-voices", "4", "--augment", "--out", str(tmp_path / name)]
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True)
    wavs = sorted(p.name for p in (tmp_path / "a" / "wav").iterdir())
    assert len(wavs) == 8
    for wav in wavs:
        assert (tmp_path / "a" / "wav" / wav).read_bytes() == (
            tmp_path / "b" / "wav" / wav
        ).read_bytes()


def test_cli_bad_input(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    out = str(tmp_path / "data")
    assert synth_data_dir.main(["--text", str(empty), "--out", out]) == 1
    assert str(empty) in capsys.readouterr().err
    text = tmp_path / "ok.txt"
    text.write_text("seven\n")
    assert synth_data_dir.main(["--text", str(text), "--out", out, "--languages", "en-xx"]) == 1
    assert "en-xx" in capsys.readouterr().err
    assert synth_data_dir.main(["--text", str(text), "--out", out, "--variants", "m99"]) == 1
    assert "m99" in capsys.readouterr().err


def test_pocketsphinx_understands_seven(synth):
    """Optional: shows the audio is intelligible, with a digit grammar (runs if installed)."""
    pocketsphinx = pytest.importorskip("pocketsphinx")
    decoder = pocketsphinx.Decoder(samprate=16000, lm=None, logfn="/dev/null")
    digits = "zero one two three four five six seven eight nine"
    decoder.add_jsgf_string(
        "digits", f"#JSGF V1.0; grammar digits; public <d> = {' | '.join(digits.split())};"
    )
    decoder.activate_search("digits")
    audio, _ = synth.synthesize("seven", EspeakVoice("en-us"))
    decoder.start_utt()
    decoder.process_raw((audio * 32767).astype(np.int16).tobytes(), full_utt=True)
    decoder.end_utt()
    assert decoder.hyp() is not None and decoder.hyp().hypstr == "seven"


# --- Piper and voice specs -------------------------------------------------------------------

needs_piper = pytest.mark.skipif(not catalogue.installed("piper-joe"),
                                 reason=catalogue.get("piper-joe").pip_command)
QUIET = {"noise_scale": 0.0, "noise_w_scale": 0.0}  # no noise: the same audio every call


@pytest.fixture(scope="module")
def piper():
    if not catalogue.installed("piper-joe"):
        pytest.skip(catalogue.get("piper-joe").pip_command)
    return PiperSynthesizer("joe", sample_rate=16000)


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def test_parse_voice_and_bad_specs():
    assert parse_voice("piper:joe") == PiperVoice("joe")
    assert parse_voice("espeak:en-us+m3") == EspeakVoice("en-us", "m3")
    assert parse_voice(" espeak:en-gb-scotland ") == EspeakVoice("en-gb-scotland")
    assert parse_voice("piper:joe").label == "piper:joe"
    assert EspeakVoice("en-us", "m3", rate_wpm=150).label == "espeak:en-us+m3"
    for bad in ("joe", "kokoro:joe", "piper:", "", "espeak"):
        with pytest.raises(ValueError, match="KIND one of espeak, piper"):
            parse_voice(bad)
    with pytest.raises(ValueError, match="bad espeak variant"):
        parse_voice("espeak:en-us+")
    with pytest.raises(ValueError, match="length_scale=9"):
        PiperVoice("joe", length_scale=9)
    assert PiperVoice("/my/voices/en_US-amy-low.onnx").id == "piper-en.US.amy.low"
    assert PiperVoice("piper-joe", 1.1, None, 0.7).id == "piper-joe_l1.10_nd_w0.70"


def test_piper_renditions_are_reproducible_and_distinct():
    r = piper_renditions(PiperVoice("joe"), 5, seed=1)
    assert r == piper_renditions(PiperVoice("joe"), 5, seed=1) != piper_renditions(
        PiperVoice("joe"), 5, seed=2)
    assert r[0] == PiperVoice("joe") and len({v.id for v in r}) == 5
    assert all(0.85 <= v.length_scale <= 1.2 and 0.4 <= v.noise_scale <= 0.9 for v in r[1:])
    with pytest.raises(ValueError, match="distinct renditions"):
        piper_renditions(PiperVoice("joe"), 3, 0, length_range=(1, 1), noise_range=(0.5, 0.5),
                         noise_w_range=(0.5, 0.5))


@needs_piper
def test_piper_resamples_to_the_requested_rate(piper):
    voice = PiperVoice("joe", **QUIET)
    native = PiperSynthesizer("joe", sample_rate=22050, lead_silence=0)
    assert native.native_sample_rate == 22050
    x22, sr22 = native.synthesize("seven eight", voice)
    x16, sr16 = piper.synthesize("seven eight", voice)
    assert (sr22, sr16) == (22050, 16000)
    assert x16.dtype == np.float32 and np.abs(x16).max() <= 1.0
    # The 16 kHz output is the native audio after 0.15 s of silence, resampled.
    import torch
    import torchaudio

    padded = np.concatenate([np.zeros(round(0.15 * 22050), np.float32), x22])
    ref = torchaudio.functional.resample(torch.from_numpy(padded), 22050, 16000).numpy()
    assert len(x16) == len(ref) and np.abs(x16[:2300]).max() < 1e-3
    np.testing.assert_allclose(x16, np.clip(ref, -1, 1), atol=1e-5)


@needs_piper
def test_piper_length_scale_and_voice_checks(piper):
    slow, _ = piper.synthesize("turn on the lights", PiperVoice("joe", 1.2, **QUIET))
    fast, _ = piper.synthesize("turn on the lights", PiperVoice("joe", 0.85, **QUIET))
    assert len(slow) > 1.25 * (len(fast) - 2400)  # lead silence aside, ~1.2/0.85 as long
    with pytest.raises(SynthesisError, match="piper-joe"):
        piper.synthesize("", PiperVoice("joe"))
    with pytest.raises(ValueError, match=r"not a catalogue voice \(joe\)"):
        Synthesizer().synthesize("seven", parse_voice("piper:nosuchvoice"))


@needs_piper
def test_piper_speech_is_read_back_by_whisper(piper):
    """Whisper tiny.en transcribes the Piper sentence word for word."""
    fw = pytest.importorskip("faster_whisper")
    if not catalogue.installed("whisper-tiny.en"):
        pytest.skip(catalogue.get("whisper-tiny.en").pip_command)
    model = fw.WhisperModel(str(catalogue.locate("whisper-tiny.en")), device="cpu",
                            compute_type="int8", cpu_threads=1)
    text = "Please turn off the kitchen lights at seven."
    audio, sr = piper.synthesize(text, PiperVoice("joe"))
    assert sr == 16000
    segments, _ = model.transcribe(audio, language="en", beam_size=1)
    heard = " ".join(s.text for s in segments)
    assert _words(heard.replace("7", "seven")) == _words(text), heard


@needs_piper
def test_cli_piper_and_espeak_voices(tmp_path):
    text = tmp_path / "text"
    text.write_text("utt_a seven\nutt_b turn on the lights\n")
    out = tmp_path / "data"
    args = ["--text", str(text), "--out", str(out), "--voices", "piper:joe,espeak:en-us+m3",
            "--piper-renditions", "2", "--augment", "--sample-rate", "8000"]
    assert synth_data_dir.main(args) == 0
    validate_data_dir(out)
    utt2voice, utt2spk = _read_table(out / "utt2voice"), _read_table(out / "utt2spk")
    assert set(utt2voice) == set(utt2spk) and len(utt2spk) == 6
    assert sorted(utt2voice.values()) == ["espeak:en-us+m3"] * 2 + ["piper:joe"] * 4
    spks = sorted(set(utt2spk.values()))
    assert spks[0] == "synth-en-us_m3_r175_p50_pr50_g0" and spks[1] == "synth-piper-joe"
    assert spks[2].startswith("synth-piper-joe_l")
    for wav in _read_table(out / "wav.scp").values():
        assert sf.info(wav).samplerate == 8000
    stamp = (out / "wav.scp").stat().st_mtime_ns
    assert synth_data_dir.main(args) == 0  # complete: nothing to do
    assert (out / "wav.scp").stat().st_mtime_ns == stamp


def test_cli_sampled_espeak_voices_beside_named_ones(tmp_path):
    text = tmp_path / "text"
    text.write_text("seven\n")
    out = tmp_path / "data"
    args = ["--text", str(text), "--out", str(out), "--num-voices", "2", "--seed", "3",
            "--voices", "espeak:sampled,espeak:en-029+f4"]
    assert synth_data_dir.main(args) == 0
    sampled = {f"synth-{v.id}" for v in sample_voices(2, 3)}
    spks = set(_read_table(out / "utt2spk").values())
    assert spks == sampled | {"synth-en-029_f4_r175_p50_pr50_g0"}
    assert "espeak:en-029+f4" in _read_table(out / "utt2voice").values()


def test_cli_bad_voice_specs(tmp_path, capsys):
    text = tmp_path / "ok.txt"
    text.write_text("seven\n")
    base = ["--text", str(text), "--out", str(tmp_path / "data")]
    assert synth_data_dir.main(base + ["--voices", "joe"]) == 1
    assert "KIND one of espeak, piper" in capsys.readouterr().err
    assert synth_data_dir.main(base + ["--voices", "espeak:en-xx"]) == 1
    assert "en-xx" in capsys.readouterr().err
    assert synth_data_dir.main(base + ["--voices", "espeak:en-us,espeak:en-us"]) == 1
    assert "more than once" in capsys.readouterr().err
    assert synth_data_dir.main(base + ["--voices", ","]) == 1
    assert "no voices" in capsys.readouterr().err
    if catalogue.installed("piper-joe"):
        assert synth_data_dir.main(base + ["--voices", "piper:nosuch"]) == 1
        assert "(joe)" in capsys.readouterr().err
    assert not (tmp_path / "data" / "wav").exists()  # nothing written before the check


@needs_piper
@pytest.mark.slow
def test_cli_piper_is_reproducible_across_processes(tmp_path):
    text = tmp_path / "text"
    text.write_text("seven\nturn off the heating\n")
    repo = Path(__file__).resolve().parents[2]
    for name in ("a", "b"):
        cmd = [sys.executable, "-m", "speechlm.bin.synth_data_dir", "--text", str(text),
               "--voices", "piper:joe", "--piper-renditions", "2", "--out", str(tmp_path / name)]
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True)
    wavs = sorted(p.name for p in (tmp_path / "a" / "wav").iterdir())
    assert len(wavs) == 4
    for wav in wavs:
        assert (tmp_path / "a" / "wav" / wav).read_bytes() == (
            tmp_path / "b" / "wav" / wav).read_bytes()
