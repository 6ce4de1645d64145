import os
import time

import numpy as np
import pytest

from speechlm.data.audio import write_wav
from speechlm.data.kaldi_dir import (
    DataDirError,
    KaldiDataDir,
    read_data_dir,
    validate_data_dir,
    write_data_dir,
)
from speechlm.testing import make_data_dir, make_wav


def problems_of(path, **kw) -> list[str]:
    with pytest.raises(DataDirError) as e:
        validate_data_dir(path, **kw)
    assert all(p in str(e.value) for p in e.value.problems[:50])
    return e.value.problems


def one_problem(path, *needles, **kw) -> str:
    """The single problem reported, checked to contain every needle."""
    problems = problems_of(path, **kw)
    assert len(problems) == 1, problems
    for needle in needles:
        assert needle in problems[0], (needle, problems[0])
    return problems[0]


def test_write_read_round_trip(tmp_path):
    d = KaldiDataDir(
        wav_scp={"r_b": "/x/b.wav", "r-a": "cat /x/a.wav |"},
        utt2spk={"s1-u2": "s1", "s1-u1": "s1", "s2-u3": "s2"},
        text={"s1-u2": "TWO  WORDS", "s1-u1": "", "s2-u3": "THREE"},
        segments={"s1-u1": ("r-a", 0.0, 1.5), "s1-u2": ("r-a", 1.5, 2.25),
                  "s2-u3": ("r_b", 0.1, 0.7)},
        utt2dur={"s1-u1": 1.5, "s1-u2": 0.75, "s2-u3": 0.6},
        extra={"utt2intent": {"s1-u1": "a", "s1-u2": "b", "s2-u3": "c"}},
    )
    write_data_dir(d, tmp_path)
    back = read_data_dir(tmp_path)
    assert back == d
    # C order: '-' (0x2d) < '_' (0x5f)
    assert (tmp_path / "wav.scp").read_text().splitlines()[0].startswith("r-a ")
    assert (tmp_path / "spk2utt").read_text() == "s1 s1-u1 s1-u2\ns2 s2-u3\n"
    assert (tmp_path / "segments").read_text().splitlines()[1] == "s1-u2 r-a 1.5 2.25"
    assert (tmp_path / "text").read_text().splitlines()[0] == "s1-u1"  # empty: no trailing blank
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_sort_is_bytewise_not_locale(tmp_path):
    d = KaldiDataDir(wav_scp={k: "x.wav" for k in ("a_b", "aB", "a-b", "ab")},
                     utt2spk={k: k for k in ("a_b", "aB", "a-b", "ab")})
    write_data_dir(d, tmp_path)
    keys = [ln.split()[0] for ln in (tmp_path / "utt2spk").read_text().splitlines()]
    assert keys == ["a-b", "aB", "a_b", "ab"]


def test_write_removes_stale_segments(tmp_path):
    make_data_dir(tmp_path, 2, segments=True)
    d = read_data_dir(tmp_path)
    write_data_dir(KaldiDataDir(wav_scp=d.wav_scp, utt2spk={r: r for r in d.wav_scp}), tmp_path)
    assert not (tmp_path / "segments").exists() and not (tmp_path / "text").exists()


def test_write_rejects_whitespace_in_ids(tmp_path):
    with pytest.raises(ValueError, match="whitespace"):
        write_data_dir(KaldiDataDir(wav_scp={"a b": "x"}, utt2spk={"a b": "s"}), tmp_path)


def test_parse_errors_name_file_and_line(tmp_path):
    make_data_dir(tmp_path, 3, segments=True)
    lines = (tmp_path / "segments").read_text().splitlines()
    lines[1] = lines[1].rsplit(" ", 1)[0] + " oops"
    (tmp_path / "segments").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataDirError, match=r"segments:2: utterance 'spk0-utt0002'"):
        read_data_dir(tmp_path)
    (tmp_path / "segments").unlink()
    (tmp_path / "utt2spk").write_text("u1 s1\nu1 s1\n")
    with pytest.raises(DataDirError, match=r"utt2spk:2: duplicate key 'u1' \(first on line 1\)"):
        read_data_dir(tmp_path)


@pytest.mark.parametrize("kw", [{}, {"segments": True}, {"piped": True}, {"utt2dur": True}],
                         ids=["plain", "segments", "piped", "utt2dur"])
def test_valid_dirs_pass(tmp_path, kw):
    d = make_data_dir(tmp_path, 5, extra={"utt2intent": list("abcde")}, **kw)
    validate_data_dir(d, expected_sample_rate=16000)


# --- one test per kind of bad input: the message names file, line and utterance ---


def test_missing_wav(tmp_path):
    make_data_dir(tmp_path, 3)
    os.remove(tmp_path / "wav" / "spk1-utt0001.wav")
    one_problem(tmp_path, "wav.scp:3:", "'spk1-utt0001'", "spk1-utt0001.wav", "no such file")


def test_unreadable_wav(tmp_path):
    make_data_dir(tmp_path, 3)
    (tmp_path / "wav" / "spk0-utt0002.wav").write_text("not audio\n")
    one_problem(tmp_path, "wav.scp:2:", "'spk0-utt0002'", "spk0-utt0002.wav",
                "not readable as audio")


def test_empty_and_zero_length_wav(tmp_path):
    make_data_dir(tmp_path, 3)
    (tmp_path / "wav" / "spk0-utt0000.wav").write_bytes(b"")
    write_wav(tmp_path / "wav" / "spk1-utt0001.wav", np.zeros(0, dtype=np.float32), 16000)
    first, second = problems_of(tmp_path)
    assert "wav.scp:1:" in first and "'spk0-utt0000'" in first and "empty (0 bytes)" in first
    assert "wav.scp:3:" in second and "'spk1-utt0001'" in second and "zero length" in second


def test_failing_pipe(tmp_path):
    make_data_dir(tmp_path, 2, piped=True)
    (tmp_path / "wav" / "spk1-utt0001.wav").unlink()
    one_problem(tmp_path, "wav.scp:2:", "'spk1-utt0001'", "command 'cat ", "status 1",
                "No such file")


def test_utterance_without_transcript(tmp_path):
    make_data_dir(tmp_path, 3)
    lines = (tmp_path / "text").read_text().splitlines()
    lines[1] = lines[1].split()[0] + " "
    (tmp_path / "text").write_text("\n".join(lines) + "\n")
    one_problem(tmp_path, "text:2:", "'spk0-utt0002'", "no transcript")


def test_unsorted_ids(tmp_path):
    make_data_dir(tmp_path, 3)
    lines = (tmp_path / "text").read_text().splitlines()
    (tmp_path / "text").write_text("\n".join([lines[1], lines[0], lines[2]]) + "\n")
    one_problem(tmp_path, "text:2:", "'spk0-utt0000'", "out of order", "LC_ALL=C")


def test_mismatched_ids_between_files(tmp_path):
    make_data_dir(tmp_path, 3)
    with open(tmp_path / "text", "a") as f:
        f.write("spk9-utt9999 NINE\n")
    problems = problems_of(tmp_path)
    expected = f"{tmp_path / 'text'}:4: utterance 'spk9-utt9999' is in text but not in utt2spk"
    assert problems == [expected]


def test_utterance_missing_from_text_and_wav(tmp_path):
    make_data_dir(tmp_path, 3)
    for name in ("utt2spk", "spk2utt"):
        with open(tmp_path / name, "a") as f:
            f.write("spk9-utt9999 spk9\n" if name == "utt2spk" else "spk9 spk9-utt9999\n")
    problems = problems_of(tmp_path)
    assert any("utt2spk:4: utterance 'spk9-utt9999' is in utt2spk but not in text" in p
               for p in problems)
    assert any("'spk9-utt9999' is in utt2spk but not in wav.scp" in p for p in problems)


def test_wrong_sample_rate(tmp_path):
    make_data_dir(tmp_path, 3)
    make_wav(tmp_path / "wav" / "spk0-utt0002.wav", 0.5, 8000)
    one_problem(tmp_path, "wav.scp:2:", "'spk0-utt0002'", "8000 Hz, expected 16000 Hz",
                expected_sample_rate=16000)
    # Without an expected rate, the odd file out is still an error.
    one_problem(tmp_path, "wav.scp:2:", "'spk0-utt0002'", "8000 Hz, but 2 of 3 recordings are "
                "at 16000 Hz")


def test_spk2utt_inconsistent(tmp_path):
    make_data_dir(tmp_path, 4)
    (tmp_path / "spk2utt").write_text("spk0 spk0-utt0000 spk0-utt0002 spk1-utt0001\n"
                                      "spk1 spk1-utt0003\n")
    one_problem(tmp_path, "spk2utt:1:", "'spk1-utt0001'", "utt2spk gives speaker 'spk1'")


def test_speaker_must_prefix_utterance(tmp_path):
    d = KaldiDataDir(wav_scp={"a": "x", "b": "x"}, utt2spk={"a": "s2", "b": "s1"},
                     text={"a": "A", "b": "B"})
    write_data_dir(d, tmp_path)
    one_problem(tmp_path, "utt2spk:2:", "'b'", "prefixes", check_audio=False)


def test_bad_segments(tmp_path):
    make_data_dir(tmp_path, 4, segments=True)
    lines = (tmp_path / "segments").read_text().splitlines()
    lines[0] = "spk0-utt0000 spk0-rec 0.6 0.1"
    lines[2] = "spk1-utt0001 nosuchrec 0.1 0.65"
    (tmp_path / "segments").write_text("\n".join(lines) + "\n")
    problems = problems_of(tmp_path)
    assert any("segments:1: utterance 'spk0-utt0000': needs 0 <= start < end" in p
               for p in problems)
    assert any("segments:3: utterance 'spk1-utt0001': recording 'nosuchrec' is not in "
               "wav.scp" in p for p in problems)


def test_missing_files_empty_lines_and_crlf(tmp_path):
    make_data_dir(tmp_path, 2, utt2dur=True)
    os.remove(tmp_path / "spk2utt")
    text = (tmp_path / "text").read_text()
    (tmp_path / "text").write_text(text.replace("\n", "\r\n", 1) + "\n")
    (tmp_path / "utt2dur").write_text("spk0-utt0000 -1\nspk1-utt0001 0.55\n")
    problems = "\n".join(problems_of(tmp_path))
    assert "spk2utt: missing (required)" in problems
    assert "text:1: carriage return" in problems
    assert "text:3: empty line" in problems
    assert "utt2dur:1: utterance 'spk0-utt0000': duration '-1' is not a positive" in problems


def test_structure_problems_fail_before_audio(tmp_path):
    make_data_dir(tmp_path, 2, piped=True)
    (tmp_path / "wav.scp").write_text((tmp_path / "wav.scp").read_text().replace(
        "cat ", "sleep 30; cat ", 1))
    (tmp_path / "text").write_text("spk0-utt0000 ONE\n")
    t = time.perf_counter()
    with pytest.raises(DataDirError, match="audio not checked"):
        validate_data_dir(tmp_path)
    assert time.perf_counter() - t < 5


def test_validating_2500_files_is_fast(tmp_path):
    wav = make_wav(tmp_path / "one.wav", 0.05, 16000)
    (tmp_path / "wav").mkdir()
    utts = [f"spk{i % 50:02d}-utt{i:05d}" for i in range(2500)]
    for u in utts:
        os.link(wav, tmp_path / "wav" / f"{u}.wav")  # 100x faster to set up than copies
    write_data_dir(KaldiDataDir(
        wav_scp={u: str(tmp_path / "wav" / f"{u}.wav") for u in utts},
        utt2spk={u: u.split("-")[0] for u in utts}, text={u: "ONE" for u in utts}), tmp_path)
    t = time.perf_counter()
    validate_data_dir(tmp_path, expected_sample_rate=16000)
    assert time.perf_counter() - t < 3.0
