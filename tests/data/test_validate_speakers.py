"""validate-data-dir follows decode's rule: a missing utt2spk/spk2utt is a warning."""
import os

import pytest

from speechlm.bin import validate_data_dir as cli
from speechlm.data.kaldi_dir import DataDirError, validate_data_dir
from speechlm.testing import make_data_dir


def test_missing_speaker_files_warn_in_the_cli(tmp_path, capsys):
    d = make_data_dir(tmp_path / "d", 3)
    os.remove(d / "utt2spk")
    os.remove(d / "spk2utt")
    assert cli.main([str(d)]) == 0
    out = capsys.readouterr()
    assert "OK" in out.out
    assert "warning:" in out.err and "utt2spk: missing: each utterance is taken as its own" \
        in out.err
    assert cli.main([str(d), "--require-speakers"]) == 1
    assert "utt2spk: missing (required)" in capsys.readouterr().err


def test_without_utt2spk_the_other_files_are_still_checked(tmp_path):
    d = make_data_dir(tmp_path / "d", 3)
    os.remove(d / "utt2spk")
    with open(d / "text", "a") as f:
        f.write("spk9-utt9999 NINE\n")
    with pytest.raises(DataDirError) as e:
        validate_data_dir(d, check_audio=False, require_speakers=False)
    assert any("'spk9-utt9999' is in text but not in wav.scp" in p for p in e.value.problems)


def test_spk2utt_alone_missing_is_derived(tmp_path):
    d = make_data_dir(tmp_path / "d", 2)
    os.remove(d / "spk2utt")
    warnings = validate_data_dir(d, check_audio=False, require_speakers=False)
    assert len(warnings) == 1 and "spk2utt: missing: derived from utt2spk" in warnings[0]
    assert validate_data_dir(make_data_dir(tmp_path / "ok", 2), check_audio=False) == []


def test_the_library_still_requires_speakers_by_default(tmp_path):
    # training, perturbation and combining keep Kaldi's rule
    d = make_data_dir(tmp_path / "d", 2)
    os.remove(d / "utt2spk")
    with pytest.raises(DataDirError, match="utt2spk: missing \\(required\\)"):
        validate_data_dir(d, check_audio=False)
