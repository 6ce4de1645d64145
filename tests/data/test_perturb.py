import numpy as np
import pytest

from speechlm.data.audio import audio_info, read_audio
from speechlm.data.kaldi_dir import (
    DataDirError,
    KaldiDataDir,
    read_data_dir,
    validate_data_dir,
    write_data_dir,
)
from speechlm.data.perturb import combine_data_dirs, speed_perturb_data_dir
from speechlm.testing import make_data_dir


def peak_hz(x: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * sample_rate / len(x))


def test_speed_perturb_changes_duration_and_pitch(tmp_path):
    src = make_data_dir(tmp_path / "src", 2, extra={"utt2intent": ["a", "b"]})
    dst = tmp_path / "sp0.9"
    speed_perturb_data_dir(src, dst, 0.9, wav_dir=tmp_path / "wav")
    validate_data_dir(dst, expected_sample_rate=16000)
    d = read_data_dir(dst)
    assert d.utterances == ["sp0.9-spk0-utt0000", "sp0.9-spk1-utt0001"]
    assert d.utt2spk["sp0.9-spk0-utt0000"] == "sp0.9-spk0"
    assert d.text["sp0.9-spk0-utt0000"] == "ZERO ONE"
    assert d.extra["utt2intent"]["sp0.9-spk1-utt0001"] == "b"
    assert d.extra["utt2uniq"] == {"sp0.9-spk0-utt0000": "spk0-utt0000",
                                   "sp0.9-spk1-utt0001": "spk1-utt0001"}
    sr, n, _ = audio_info(d.wav_scp["sp0.9-spk0-utt0000"])
    assert sr == 16000 and n / sr == pytest.approx(0.5 / 0.9, abs=1e-3)
    assert d.utt2dur["sp0.9-spk0-utt0000"] == pytest.approx(0.5 / 0.9, abs=1e-3)
    # The 200 Hz tone of utterance 0 drops to 180 Hz, like sox speed 0.9.
    y = read_audio(d.wav_scp["sp0.9-spk0-utt0000"])
    assert peak_hz(y, 16000) == pytest.approx(180.0, abs=3.0)


def test_speed_perturb_segments(tmp_path):
    src = make_data_dir(tmp_path / "src", 4, segments=True)
    speed_perturb_data_dir(src, tmp_path / "sp1.1", 1.1, wav_dir=tmp_path / "wav")
    validate_data_dir(tmp_path / "sp1.1")
    a, b = read_data_dir(src), read_data_dir(tmp_path / "sp1.1")
    rec, start, end = b.segments["sp1.1-spk0-utt0000"]
    assert rec == "sp1.1-spk0-rec"
    assert (start, end) == pytest.approx((a.segments["spk0-utt0000"][1] / 1.1,
                                          a.segments["spk0-utt0000"][2] / 1.1))


def test_finished_output_is_skipped(tmp_path, monkeypatch):
    src = make_data_dir(tmp_path / "src", 2)
    speed_perturb_data_dir(src, tmp_path / "dst", 1.1, wav_dir=tmp_path / "wav")
    from speechlm.data import perturb

    monkeypatch.setattr(perturb, "load_audio", lambda *a, **k: pytest.fail("redone"))
    speed_perturb_data_dir(src, tmp_path / "dst", 1.1, wav_dir=tmp_path / "wav")
    with pytest.raises(pytest.fail.Exception):  # other arguments: not the same output
        speed_perturb_data_dir(src, tmp_path / "dst", 1.1, wav_dir=tmp_path / "wav",
                               target_sample_rate=8000)


def test_factor_one_copies_or_resamples(tmp_path):
    src = make_data_dir(tmp_path / "src", 2)
    speed_perturb_data_dir(src, tmp_path / "same", 1.0, wav_dir=tmp_path / "wav")
    assert read_data_dir(tmp_path / "same") == read_data_dir(src)
    src8k = make_data_dir(tmp_path / "src8k", 2, sample_rate=8000)
    speed_perturb_data_dir(src8k, tmp_path / "res", 1.0, wav_dir=tmp_path / "wav8k")
    d = read_data_dir(tmp_path / "res")
    assert d.utterances == read_data_dir(src8k).utterances
    assert audio_info(d.wav_scp["spk0-utt0000"])[:2] == (16000, 8000)


def test_combine_three_way(tmp_path):
    src = make_data_dir(tmp_path / "src", 3, segments=True)
    parts = []
    for f in (0.9, 1.0, 1.1):
        parts.append(tmp_path / f"sp{f}")
        speed_perturb_data_dir(src, parts[-1], f, wav_dir=tmp_path / "wav")
    combine_data_dirs(tmp_path / "all", parts)
    validate_data_dir(tmp_path / "all", expected_sample_rate=16000)
    d = read_data_dir(tmp_path / "all")
    assert len(d.utterances) == 9 and len(d.wav_scp) == 6
    # utt2uniq exists only in the perturbed parts; combine fills in the identity.
    assert d.extra["utt2uniq"]["spk0-utt0000"] == "spk0-utt0000"
    assert d.extra["utt2uniq"]["sp1.1-spk0-utt0000"] == "spk0-utt0000"


def test_combine_mixed_segments_and_plain(tmp_path):
    a = make_data_dir(tmp_path / "a", 2, segments=True)
    b = read_data_dir(make_data_dir(tmp_path / "b", 3))

    def rename(m: dict) -> dict:
        return {k.replace("spk", "x"): v.replace("spk", "x") if "/" not in v else v
                for k, v in m.items()}

    b = KaldiDataDir(wav_scp=rename(b.wav_scp), utt2spk=rename(b.utt2spk), text=rename(b.text))
    write_data_dir(b, tmp_path / "b")
    b = tmp_path / "b"
    combine_data_dirs(tmp_path / "ab", [a, b])
    validate_data_dir(tmp_path / "ab")
    seg = read_data_dir(tmp_path / "ab").segments
    assert seg["x0-utt0000"] == pytest.approx(("x0-utt0000", 0.0, 0.5))


def test_combine_rejects_duplicate_utterances(tmp_path):
    a = make_data_dir(tmp_path / "a", 2)
    with pytest.raises(DataDirError, match=r"utterance 'spk0-utt0000' is also in .*a/utt2spk"):
        combine_data_dirs(tmp_path / "aa", [a, a])


def test_volume_perturbation_is_seeded_and_bounded(tmp_path):
    import numpy as np

    from speechlm.data.audio import read_audio
    from speechlm.data.perturb import speed_perturb_data_dir
    from speechlm.testing import make_data_dir

    src = make_data_dir(tmp_path / "src", n_utts=6, sample_rate=16000)
    runs = []
    for name in ("a", "b"):
        dst = tmp_path / name
        speed_perturb_data_dir(src, dst, 1.0, wav_dir=dst / "wav", volume_range=(0.125, 2.0))
        runs.append(dst)
    gains = []
    for line in (src / "wav.scp").read_text().splitlines():
        rec, path = line.split(maxsplit=1)
        x = read_audio(path)
        ya = read_audio(str(runs[0] / "wav" / f"{rec}.wav"))
        yb = read_audio(str(runs[1] / "wav" / f"{rec}.wav"))
        assert np.array_equal(ya, yb)  # same seed, same audio
        assert np.abs(ya).max() < 1.0
        gains.append(np.sqrt(np.mean(ya**2) / np.mean(x**2)))
    assert all(0.12 < g < 2.05 for g in gains)
    assert max(gains) / min(gains) > 1.5  # not one gain for everything
