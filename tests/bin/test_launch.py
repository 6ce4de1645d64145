import sys

import pytest

from speechlm.bin.launch import parse_job_range, run_local


def test_parse_job_range():
    assert parse_job_range("JOB=1:4") == ("JOB", 1, 4)
    for bad in ("JOB=0:2", "JOB=3:2", "JOB1:2", "JOB=a:b"):
        with pytest.raises(ValueError):
            parse_job_range(bad)


def test_run_local_substitutes_job_and_writes_logs(tmp_path):
    out = tmp_path / "out.JOB.txt"
    log = tmp_path / "log" / "job.JOB.log"
    cmd = [sys.executable, "-c", "import sys; open(sys.argv[1], 'w').write(sys.argv[2])",
           str(out), "JOB"]
    assert run_local("JOB=1:3", str(log), cmd) == 0
    for j in (1, 2, 3):
        assert (tmp_path / f"out.{j}.txt").read_text() == str(j)
        assert "Ended (code 0)" in (tmp_path / "log" / f"job.{j}.log").read_text()


def test_run_local_reports_failed_jobs(tmp_path, capsys):
    log = tmp_path / "job.JOB.log"
    cmd = [sys.executable, "-c", "import sys; sys.exit(int(sys.argv[1]) == 2)", "JOB"]
    assert run_local("JOB=1:3", str(log), cmd) == 1
    err = capsys.readouterr().err
    assert "1 / 3 failed" in err and "job.2.log" in err
    assert "Ended (code 1)" in (tmp_path / "job.2.log").read_text()
