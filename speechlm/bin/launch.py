"""Run JOB=1:N copies of a command, locally in parallel or as a Slurm array (Kaldi run.pl style).

    speechlm launch JOB=1:4 exp/decode/log/decode.JOB.log speechlm decode ... --job JOB --nj 4
    speechlm launch --backend slurm --slurm-opts "-p cpu --mem 4G" JOB=1:4 LOG CMD ...

Every ``JOB`` in the log path and the command is replaced by the job number. Each job's
stdout and stderr go to its log, which starts with the command and ends with its exit
status and run time, as Kaldi's run.pl writes them. The exit status is non-zero when any
job failed, and the message names the failed jobs' logs.

Reruns after a crash are safe: each local job runs in its own process group that is killed
when ``launch`` exits, however it exits (Ctrl-C, SIGTERM, and on Linux also SIGKILL through
``PR_SET_PDEATHSIG``), and the log dir is locked (``<log dir>/.launch.lock``, which the jobs
hold too) so a second run over the same outputs stops with a message naming the holder's
pid instead of writing the same files.
"""
from __future__ import annotations

import argparse
import ctypes
import fcntl
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from speechlm.bin import command_main

JOB_RANGE = re.compile(r"^(?P<var>[A-Za-z_]+)=(?P<start>\d+):(?P<end>\d+)$")
LOCK_NAME = ".launch.lock"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _libc_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# resolved once here, so a forked child only makes the call (no imports, no locks)
_PRCTL = _libc_prctl()


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Have Linux send ``sig`` to this process when the thread that started it exits
    (``prctl(PR_SET_PDEATHSIG)``); elsewhere nothing. Call it first thing in a child."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


class OutputLocked(OSError):
    """Another run holds the lock of an output dir."""


def lock_dir(directory: Path, name: str = LOCK_NAME, wait: bool = False) -> int:
    """Lock ``directory`` for this run (``fcntl.flock`` on ``directory/<name>``, which
    holds the pid of the run); returns the lock's fd, which keeps the lock until closed
    by this process and every child that inherited it. With ``wait``, a lock held by
    another run is waited for (saying so on stderr) instead of refused.

    Raises:
        OutputLocked: another live run holds it (the message names its pid); not with
            ``wait``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        if not wait:
            os.close(fd)
            raise OutputLocked(f"{directory} is in use by another run (pid {holder}, or jobs "
                               f"it started: they hold {path} until they exit); wait for it or "
                               "stop it, then rerun") from None
        print(f"{directory} is being written by another run (pid {holder}): waiting for it",
              file=sys.stderr, flush=True)
        fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def parse_job_range(spec: str) -> tuple[str, int, int]:
    """``"JOB=1:4"`` -> ``("JOB", 1, 4)``.

    Raises:
        ValueError: for anything else, e.g. a start above the end.
    """
    m = JOB_RANGE.match(spec)
    if not m:
        raise ValueError(f"expected a job range like JOB=1:4, got {spec!r}")
    start, end = int(m["start"]), int(m["end"])
    if start < 1 or start > end:
        raise ValueError(f"bad job range {spec!r}: need 1 <= start <= end")
    return m["var"], start, end


def _substitute(text: str, var: str, job: int) -> str:
    return re.sub(rf"\b{var}\b", str(job), text)


def _job_script(cmd: str) -> str:
    """``cmd`` under a bash that, on SIGTERM or SIGHUP (sent by the kernel when launch dies),
    kills its whole process group: the command's own children too, not only bash."""
    return f"trap 'trap - TERM HUP; kill -TERM 0' TERM HUP\n{{ {cmd}\n}} &\nwait $!\n"


def _job_preexec(parent: int) -> None:
    die_with_parent(signal.SIGTERM)
    if os.getppid() != parent:  # launch died before the call above took effect
        os._exit(143)


def _run_one(var: str, job: int, log_template: str, command: list[str],
             running: dict[int, subprocess.Popen], lock_fd: int | None = None) -> int:
    log = Path(_substitute(log_template, var, job))
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = " ".join(_substitute(shlex.quote(c) if c != "|" else c, var, job) for c in command)
    env = dict(os.environ, **{var: str(job)})
    start = time.time()
    parent = os.getpid()
    with open(log, "w", encoding="utf-8") as f:
        f.write(f"# {cmd}\n# Started at {time.ctime()}\n#\n")
        f.flush()
        # own process group (Ctrl-C and kills reach the job through launch, never half of
        # it); the inherited lock fd keeps the output dir locked while any of it lives
        proc = subprocess.Popen(["/bin/bash", "-c", _job_script(cmd)], stdout=f,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True, preexec_fn=lambda: _job_preexec(parent),
                                pass_fds=() if lock_fd is None else (lock_fd,))
        running[job] = proc
        try:
            rc = proc.wait()
        finally:
            running.pop(job, None)
        f.write(f"# Accounting: time={int(time.time() - start)} threads=1\n"
                f"# Ended (code {rc}) at {time.ctime()}, elapsed time {time.time() - start:.1f} "
                "seconds\n")
    return rc


def run_local(spec: str, log_template: str, command: list[str], max_parallel: int = 0) -> int:
    """Run the jobs on this machine, at most ``max_parallel`` at once (0: all at once)."""
    var, start, end = parse_job_range(spec)
    jobs = list(range(start, end + 1))
    workers = max_parallel if max_parallel > 0 else len(jobs)
    lock_fd = lock_dir(Path(_substitute(log_template, var, start)).parent)
    running: dict[int, subprocess.Popen] = {}
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        codes = list(pool.map(
            lambda j: _run_one(var, j, log_template, command, running, lock_fd), jobs))
    except BaseException:  # Ctrl-C or an error here: no job may outlive this run
        _kill_jobs(running)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        os.close(lock_fd)
    failed = [j for j, rc in zip(jobs, codes, strict=True) if rc != 0]
    if failed:
        logs = ", ".join(_substitute(log_template, var, j) for j in failed)
        print(f"launch: {len(failed)} / {len(jobs)} failed, see {logs}", file=sys.stderr)
        return 1
    return 0


def run_jobs(cmd: str, nj: int, log_template: str, command: list[str], *, what: str) -> int:
    """Jobs ``JOB=1:nj`` of ``command`` (``JOB`` in it and in ``log_template`` is the job
    number) through ``cmd``: ``local`` (:func:`run_local`) or a Kaldi-style launcher such
    as ``utils/run.pl`` or ``utils/slurm.pl --mem 4G``. Returns the exit code; on failure
    says which command failed and where its logs are, prefixed with ``what``."""
    if cmd == "local":
        return run_local(f"JOB=1:{nj}", log_template, command)
    import shlex

    rc = subprocess.call([*shlex.split(cmd), f"JOB=1:{nj}", log_template, *command])
    if rc != 0:
        print(f"{what}: {cmd} failed (exit {rc}); see {log_template}", file=sys.stderr)
    return rc


def _kill_jobs(running: dict[int, subprocess.Popen]) -> None:
    for proc in list(running.values()):
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def run_slurm(spec: str, log_template: str, command: list[str], slurm_opts: str = "") -> int:
    """Submit the jobs as one Slurm array and wait for it (``sbatch --wait``)."""
    var, start, end = parse_job_range(spec)
    log_dir = Path(_substitute(log_template, var, start)).parent
    lock_fd = lock_dir(log_dir)
    cmd = " ".join(shlex.quote(c) if c != "|" else c for c in command)
    body = re.sub(rf"\b{var}\b", "${" + var + "}", cmd)
    script = (f"#!/bin/bash\n{var}=$SLURM_ARRAY_TASK_ID\n"
              f"cd {shlex.quote(os.getcwd())}\n{body}\n")
    log = re.sub(rf"\b{var}\b", "%a", log_template)
    with tempfile.NamedTemporaryFile("w", suffix=".sh", dir=log_dir, delete=False) as f:
        f.write(script)
    sbatch = (["sbatch", "--wait", f"--array={start}-{end}", f"--output={log}"]
              + shlex.split(slurm_opts) + [f.name])
    try:
        return subprocess.call(sbatch)
    except FileNotFoundError:
        print("launch: sbatch not found; use --backend local on a machine without Slurm",
              file=sys.stderr)
        return 1
    finally:
        os.close(lock_fd)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=("local", "slurm"),
                        default=os.environ.get("SPEECHLM_LAUNCH_BACKEND", "local"))
    parser.add_argument("--max-parallel", type=int, default=0,
                        help="local: run at most this many jobs at once (0: all)")
    parser.add_argument("--slurm-opts", default="", help="extra sbatch options, one string")
    parser.add_argument("job_range", help="JOB=1:N")
    parser.add_argument("log", help="log file; JOB is replaced by the job number")
    parser.add_argument("command", nargs=argparse.REMAINDER)


def run(args: argparse.Namespace) -> int:
    if not args.command:
        print("launch: no command given", file=sys.stderr)
        return 2
    if args.backend == "slurm":
        return run_slurm(args.job_range, args.log, args.command, args.slurm_opts)
    return run_local(args.job_range, args.log, args.command, args.max_parallel)


def main(argv: list[str] | None = None) -> int:
    return command_main("speechlm launch", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
