"""The data-layer commands: speechlm.bin.validate_data_dir, compute_fbank, speed_perturb."""

import subprocess
import sys
from pathlib import Path

import kaldiio

from speechlm.bin import compute_fbank, speed_perturb, validate_data_dir
from speechlm.data.features import GlobalCMVN
from speechlm.data.kaldi_dir import read_data_dir
from speechlm.testing import make_data_dir

REPO = Path(__file__).resolve().parents[2]


def test_validate_cli_ok_and_errors(tmp_path, capsys):
    d = make_data_dir(tmp_path / "d", 3)
    assert validate_data_dir.main([str(d), "--sample-rate", "16000"]) == 0
    assert "OK" in capsys.readouterr().out
    (d / "wav" / "spk0-utt0002.wav").unlink()
    assert validate_data_dir.main([str(d)]) == 1
    err = capsys.readouterr().err
    assert "1 problem(s)" in err and "wav.scp:2:" in err and "spk0-utt0002" in err
    assert validate_data_dir.main([str(d), "--no-audio"]) == 0


def test_validate_runs_as_module(tmp_path):
    d = make_data_dir(tmp_path / "d", 2)
    (d / "text").write_text("spk0-utt0000 ONE\n")
    proc = subprocess.run([sys.executable, "-m", "speechlm.bin.validate_data_dir", str(d)],
                          check=False, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1 and "in utt2spk but not in text" in proc.stderr


def test_compute_fbank_cli_all_jobs_then_cmvn(tmp_path):
    d = make_data_dir(tmp_path / "d", 5)
    (tmp_path / "fbank.yaml").write_text("num_mel_bins: 40\n")
    out = tmp_path / "fbank"
    assert compute_fbank.main(["--data-dir", str(d), "--out-dir", str(out), "--nj", "2",
                               "--job", "2", "--config", str(tmp_path / "fbank.yaml"),
                               "--no-progress"]) == 0
    assert (out / "feats.2.done").exists() and not (out / "feats.scp").exists()
    assert compute_fbank.main(["--data-dir", str(d), "--out-dir", str(out), "--nj", "2",
                               "--config", str(tmp_path / "fbank.yaml"), "--no-progress",
                               "--cmvn-out", str(out / "feats_stats.npz")]) == 0
    feats = dict(kaldiio.load_scp(str(out / "feats.scp")))
    assert list(feats) == read_data_dir(d).utterances
    assert all(m.shape[1] == 40 for m in feats.values())
    cmvn = GlobalCMVN.load(out / "feats_stats.npz")
    assert cmvn.count == sum(len(m) for m in feats.values())
    assert "num_mel_bins: 40" in (out / "fbank.yaml").read_text()


def test_speed_perturb_cli(tmp_path, capsys):
    d = make_data_dir(tmp_path / "d", 2)
    dst = tmp_path / "d_sp"
    assert speed_perturb.main(["--src", str(d), "--dst", str(dst)]) == 0
    out = read_data_dir(dst)
    assert len(out.utterances) == 6
    assert {u.split("-")[0] for u in out.utterances} == {"sp0.9", "sp1.1", "spk0", "spk1"}
    assert validate_data_dir.main([str(dst)]) == 0


def test_validate_no_commands_reports_them_and_runs_none(tmp_path, capsys):
    d = make_data_dir(tmp_path / "d", 2)
    marker = tmp_path / "ran"
    lines = (d / "wav.scp").read_text().splitlines()
    utt, path = lines[0].split(maxsplit=1)
    lines[0] = f"{utt} touch {marker}; cat {path} |"
    (d / "wav.scp").write_text("\n".join(lines) + "\n")
    assert validate_data_dir.main([str(d), "--no-commands"]) == 1
    err = capsys.readouterr().err
    assert "wav.scp:1:" in err and utt in err and "commands are refused" in err
    assert not marker.exists()
    assert validate_data_dir.main([str(d)]) == 0 and marker.exists()


def test_validate_help_says_commands_are_executed(capsys):
    import pytest

    with pytest.raises(SystemExit):
        validate_data_dir.main(["--help"])
    out = capsys.readouterr().out
    assert "RUNS them" in out and "--no-commands" in out and "--command-timeout" in out


def test_compute_fbank_jobs_run_in_parallel_through_cmd(tmp_path):
    """--nj 3 through utils/run.pl: one process per job, logs per job, the same features."""
    import numpy as np

    d = make_data_dir(tmp_path / "d", 6)
    one, three = tmp_path / "one", tmp_path / "three"
    assert compute_fbank.main(["--data-dir", str(d), "--out-dir", str(one),
                               "--no-progress"]) == 0
    assert compute_fbank.main(["--data-dir", str(d), "--out-dir", str(three), "--nj", "3",
                               "--cmd", str(REPO / "tools" / "kaldi_utils" / "run.pl"),
                               "--no-progress"]) == 0
    assert sorted(p.name for p in (three / "log").glob("fbank.*.log")) == \
        ["fbank.1.log", "fbank.2.log", "fbank.3.log"]
    a = dict(kaldiio.load_scp(str(one / "feats.scp")))
    b = dict(kaldiio.load_scp(str(three / "feats.scp")))
    assert list(a) == list(b) and all(np.array_equal(a[u], b[u]) for u in a)
