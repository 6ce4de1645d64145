"""utils/run.pl and utils/slurm.pl accept what Kaldi's runners accept."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UTILS = REPO / "tools" / "kaldi_utils"


def run(tool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               PYTHONPATH=str(REPO))
    return subprocess.run(["bash", str(UTILS / tool), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_run_pl_kaldi_options_and_job_array(tmp_path):
    r = run("run.pl", "--mem", "4G", "--num-threads", "2", "--gpu", "0", "--max-jobs-run", "1",
            "JOB=1:3", "log/x.JOB.log", "echo", "job", "JOB", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for j in (1, 2, 3):
        log = (tmp_path / "log" / f"x.{j}.log").read_text()
        assert f"\njob {j}\n" in log and "Ended (code 0)" in log


def test_run_pl_single_job_form(tmp_path):
    r = run("run.pl", "log/one.log", "echo", "JOB", "stays", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "JOB stays" in (tmp_path / "log" / "one.log").read_text()


def test_run_pl_errors(tmp_path):
    r = run("run.pl", "--bogus", "1", "JOB=1:2", "l.log", "true", cwd=tmp_path)
    assert r.returncode == 2 and "unknown option --bogus" in r.stderr
    r = run("run.pl", "JOB=1:2", "l.JOB.log", "exit", "3", cwd=tmp_path)
    assert r.returncode != 0
    assert "2 / 2 failed" in r.stderr


def test_slurm_pl_without_sbatch_says_so(tmp_path):
    env_path = os.environ.get("PATH", "")
    if any((Path(p) / "sbatch").exists() for p in env_path.split(":")):
        return  # a real cluster: covered by the slow Slurm integration test
    r = run("slurm.pl", "--mem", "1G", "JOB=1:2", "l.JOB.log", "true", cwd=tmp_path)
    assert r.returncode != 0 and "sbatch not found" in r.stderr
