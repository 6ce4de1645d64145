import numpy as np
import pytest
import soundfile as sf

from speechlm.data.audio import AudioError, audio_info, load_audio, read_audio, write_wav
from speechlm.testing import make_wav, tone


def peak_hz(x: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * sample_rate / len(x))


def test_write_read_round_trip(tmp_path):
    x = tone(0.5, 16000, 440.0)
    write_wav(tmp_path / "a.wav", x, 16000)
    y = read_audio(str(tmp_path / "a.wav"), target_sample_rate=16000)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1 / 32768)  # 16-bit quantisation
    assert sf.info(tmp_path / "a.wav").subtype == "PCM_16"
    assert not list(tmp_path.glob("*.tmp"))


def test_write_wav_clips_instead_of_wrapping(tmp_path):
    write_wav(tmp_path / "a.wav", np.array([2.0, -2.0], dtype=np.float32), 8000)
    y = read_audio(str(tmp_path / "a.wav"), target_sample_rate=None)
    assert y[0] > 0.99 and y[1] == -1.0


def test_piped_entry_reads_the_same_samples(tmp_path):
    path = make_wav(tmp_path / "a.wav", 0.3, 16000, 300.0)
    plain = read_audio(str(path))
    piped = read_audio(f"cat {path} |", utt="u1")
    np.testing.assert_array_equal(piped, plain)
    assert audio_info(f"cat {path} |") == (16000, 4800, 1)


def test_audio_info_reads_header(tmp_path):
    path = make_wav(tmp_path / "a.wav", 0.25, 8000, 300.0, num_channels=2)
    assert audio_info(str(path)) == (8000, 2000, 2)


def test_stereo_is_averaged_to_mono(tmp_path):
    path = make_wav(tmp_path / "s.wav", 0.1, 16000, 300.0, num_channels=2)  # ch1 = ch0 / 2
    y, sr = load_audio(str(path))
    x = tone(0.1, 16000, 300.0)
    assert y.ndim == 1 and sr == 16000
    np.testing.assert_allclose(y, 0.75 * x, atol=2 / 32768)


def test_resample_8k_to_16k_keeps_length_and_pitch(tmp_path):
    path = make_wav(tmp_path / "a.wav", 1.0, 8000, 500.0)
    y = read_audio(str(path), target_sample_rate=16000)
    assert len(y) == 16000
    assert peak_hz(y, 16000) == pytest.approx(500.0, abs=2.0)


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_text("this is not audio\n"), "not readable as audio"),
        (lambda p: p.write_bytes(b""), "file is empty"),
        (lambda p: write_wav(p, np.zeros(0, dtype=np.float32), 16000), "zero length"),
    ],
    ids=["missing", "text_file", "empty_file", "zero_samples"],
)
def test_bad_file_names_utterance_and_file(tmp_path, make, reason):
    path = tmp_path / "bad.wav"
    make(path)
    for fn in (read_audio, audio_info):
        with pytest.raises(AudioError, match=reason) as e:
            fn(str(path), utt="utt7")
        assert "utt7" in str(e.value) and str(path) in str(e.value)


def test_failing_command_reports_status_and_stderr():
    entry = "echo 'sox FAIL formats: cannot open' >&2; exit 3 |"
    with pytest.raises(AudioError) as e:
        read_audio(entry, utt="utt9")
    msg = str(e.value)
    assert "utt9" in msg and "status 3" in msg and "cannot open" in msg and entry in msg


def test_command_without_output():
    with pytest.raises(AudioError, match="no audio"):
        read_audio("true |", utt="u")


def test_expected_sample_rate_mismatch(tmp_path):
    path = make_wav(tmp_path / "a.wav", 0.1, 8000)
    with pytest.raises(AudioError, match="8000 Hz, expected 16000 Hz") as e:
        read_audio(str(path), utt="u3", expected_sample_rate=16000)
    assert "u3" in str(e.value)


def _group_alive(marker: str) -> bool:
    """Whether a process whose command line contains ``marker`` still runs (Linux)."""
    import os

    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    return True
        except OSError:
            continue
    return False


def test_a_hanging_command_is_killed_by_the_timeout():
    from speechlm.data.audio import CommandLimits

    # a pipeline: the timeout must kill the sleep too, not only the shell
    entry = "sleep 100.0123 | cat |"
    with pytest.raises(AudioError) as e:
        read_audio(entry, utt="slow1", commands=CommandLimits(timeout_s=0.5))
    msg = str(e.value)
    assert "slow1" in msg and entry in msg and "within 0.5 s" in msg
    assert not _group_alive("100.0123")


def test_a_flood_is_stopped_by_the_output_cap_with_bounded_memory():
    import resource

    from speechlm.data.audio import CommandLimits

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    entry = "head -c 1500000000 /dev/zero |"
    with pytest.raises(AudioError) as e:
        read_audio(entry, utt="big1", commands=CommandLimits(max_bytes=20 << 20))
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    msg = str(e.value)
    assert "big1" in msg and entry in msg and f"more than {20 << 20} bytes" in msg
    assert grown_mib < 200, f"peak memory grew by {grown_mib:.0f} MiB reading a 1.5 GB flood"
    assert not _group_alive("1500000000")


def test_commands_can_be_refused(tmp_path):
    from speechlm.data.audio import CommandLimits

    path = make_wav(tmp_path / "a.wav", 0.2, 16000)
    marker = tmp_path / "ran"
    entry = f"touch {marker}; cat {path} |"
    with pytest.raises(AudioError, match="u7.*commands are refused"):
        audio_info(entry, "u7", commands=CommandLimits(allow=False))
    assert not marker.exists()
    assert audio_info(entry, "u7")[0] == 16000 and marker.exists()  # allowed by default
