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


def _pids_alive(pids: list[int]) -> list[int]:
    import os

    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            with open(f"/proc/{pid}/stat") as f:  # a zombie has exited
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (ProcessLookupError, FileNotFoundError):  # gone, or reaped since the kill(0)
            continue
        if state != "Z":
            alive.append(pid)
    return alive


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_killed_run_leaves_no_jobs_and_the_rerun_completes(tmp_path, how):
    """A run killed mid-way (its jobs are grandchildren: bash -> python) leaves nothing
    running, and the rerun over the same dirs completes."""
    import signal
    import subprocess
    import time

    out, log = tmp_path / "out", tmp_path / "log" / "job.JOB.log"
    out.mkdir()
    # each job writes its pid, then sleeps long unless told to be quick, then writes its output
    job = ("import os, sys, time; d, j, t = sys.argv[1], sys.argv[2], float(sys.argv[3]); "
           "open(f'{d}/pid.{j}', 'w').write(str(os.getpid())); time.sleep(t); "
           "open(f'{d}/done.{j}.tmp', 'w').write(j); os.replace(f'{d}/done.{j}.tmp', "
           "f'{d}/done.{j}')")
    argv = [sys.executable, "-m", "speechlm.bin.launch", "JOB=1:2", str(log),
            sys.executable, "-c", job, str(out), "JOB"]
    parent = subprocess.Popen([*argv, "60"])
    deadline = time.monotonic() + 30
    while len(list(out.glob("pid.*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = [int(p.read_text()) for p in sorted(out.glob("pid.*"))]
    assert len(pids) == 2, "the jobs did not start"
    parent.send_signal(getattr(signal, how))
    parent.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _pids_alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _pids_alive(pids) == [], f"jobs outlived their launch ({how})"
    assert not list(out.glob("done.*"))
    rerun = subprocess.run([*argv, "0"], capture_output=True, text=True, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(p.name for p in out.glob("done.*")) == ["done.1", "done.2"]


def test_a_second_run_on_the_same_dir_is_refused_naming_the_holder(tmp_path):
    import os

    from speechlm.bin.launch import OutputLocked, lock_dir

    log = tmp_path / "log" / "job.JOB.log"
    fd = lock_dir(log.parent)
    try:
        with pytest.raises(OutputLocked, match=f"pid {os.getpid()}"):
            run_local("JOB=1:1", str(log), [sys.executable, "-c", "pass"])
    finally:
        os.close(fd)
    assert run_local("JOB=1:1", str(log), [sys.executable, "-c", "pass"]) == 0
