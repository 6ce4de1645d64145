"""Run a rule in a separate, locked-down process and validate what comes back.

Four layers, each enough to stop the adversarial suite on its own for the attacks it is
for (``tests/monitor/test_sandbox.py``):

1. the AST check (``_sandbox_policy.check_source``): only ``import numpy``, no dunder or
   private names or attributes, no ``open``/``eval``/``getattr``..., no numpy file I/O;
   done here and again in the child;
2. the child's builtins: only ``SAFE_BUILTINS`` and an import that admits only numpy;
3. the child's process limits (``resource.setrlimit``): uid nobody when started as root,
   no new processes (``RLIMIT_NPROC`` 0), no new file descriptors (so no files, no
   sockets), no file writes, CPU seconds, address space; core dumps off;
4. this side: a wall-clock limit (the whole process group is killed), output parsed with
   ``allow_pickle=False`` and checked again (one boolean (T,) array per series).

>>> ok = run_rule("import numpy as np\\ndef detect(values, timestamps):\\n"
...               "    return values > 1\\n", [(np.array([0.0, 2.0]), np.array([0.0, 1.0]))])
>>> ok.ok, ok.masks[0].tolist()
(True, [False, True])
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speechlm.monitor._sandbox_policy import check_source
from speechlm.monitor.rule import Rule

__all__ = ["SandboxLimits", "SandboxResult", "run_rule", "check_source", "RESULT_KINDS"]

_CHILD = Path(__file__).with_name("_sandbox_child.py")
RESULT_KINDS = ("ok", "rejected", "exception", "cpu_time", "wall_time", "memory",
                "bad_output", "crashed")


@dataclass(frozen=True)
class SandboxLimits:
    """Limits for one sandbox run (one rule over a batch of series).

    Args:
        cpu_s: CPU seconds for the child (whole seconds, rounded up; SIGXCPU then SIGKILL).
        wall_s: wall-clock seconds, start-up included, before the process group is killed.
        memory_mb: address space the rule may add to the child after numpy is imported.

    >>> SandboxLimits(cpu_s=1, wall_s=3, memory_mb=256).memory_mb
    256
    """

    cpu_s: float = 5.0
    wall_s: float = 15.0
    memory_mb: int = 1024

    def __post_init__(self) -> None:
        if self.cpu_s <= 0 or self.wall_s <= 0 or self.memory_mb <= 0:
            raise ValueError(f"sandbox limits must be > 0, got {self}")


@dataclass
class SandboxResult:
    """What happened. ``kind`` is one of ``RESULT_KINDS``; ``masks`` is set only when ok.

    Args:
        ok: the rule ran on every series and returned valid masks.
        kind: ``ok``, ``rejected`` (AST check), ``exception``, ``cpu_time``, ``wall_time``,
            ``memory``, ``bad_output`` or ``crashed`` (killed by another signal).
        error: a one-paragraph reason (for the repair agent and the rule's record).
        masks: one boolean (T,) array per input series.
        wall_s: host-side seconds for the run, process start included.
        cpu_s: the child's CPU seconds when it reported them.
    """

    ok: bool
    kind: str
    error: str = ""
    masks: list[np.ndarray] | None = field(default=None, repr=False)
    wall_s: float = 0.0
    cpu_s: float | None = None


def run_rule(rule: Rule | str, series: list[tuple[np.ndarray, np.ndarray]],
             limits: SandboxLimits | None = None, *, _check_ast: bool = True) -> SandboxResult:
    """Run ``rule``'s ``detect`` over each ``(values, timestamps)`` in a sandboxed child.

    Args:
        rule: a ``Rule`` or its source.
        series: (values, timestamps) pairs, each (T,) and cast to float64.
        limits: CPU, wall and memory limits (defaults: ``SandboxLimits()``).
        _check_ast: tests only; False skips the AST check (here and in the child) to show
            that the run-time layers hold on their own.

    Returns:
        A ``SandboxResult``; never raises for anything the rule does.
    """
    limits = limits or SandboxLimits()
    source = rule.source if isinstance(rule, Rule) else rule
    start = time.perf_counter()
    if _check_ast:
        reasons = check_source(source)
        if reasons:
            return SandboxResult(False, "rejected", "; ".join(reasons),
                                 wall_s=time.perf_counter() - start)
    payload = io.BytesIO()
    payload.write((json.dumps({"source": source, "cpu_s": limits.cpu_s,
                               "memory_bytes": limits.memory_mb * 2**20,
                               "check_ast": _check_ast, "n": len(series)}) + "\n").encode())
    shapes = []
    for i, (values, timestamps) in enumerate(series):
        v = np.ascontiguousarray(values, dtype=np.float64)
        t = np.ascontiguousarray(timestamps, dtype=np.float64)
        if v.ndim != 1 or v.shape != t.shape:
            raise ValueError(f"series {i}: values {v.shape} and timestamps {t.shape} "
                             f"must be the same (T,) shape")
        np.lib.format.write_array(payload, v, allow_pickle=False)
        np.lib.format.write_array(payload, t, allow_pickle=False)
        shapes.append(v.shape)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "LC_ALL": "C.UTF-8"}
    proc = subprocess.Popen([sys.executable, "-I", str(_CHILD)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            cwd="/", start_new_session=True)
    try:
        out, err = proc.communicate(payload.getvalue(), timeout=limits.wall_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        return SandboxResult(False, "wall_time", f"the rule ran past the wall-clock limit "
                             f"of {limits.wall_s:g} s and was killed",
                             wall_s=time.perf_counter() - start)
    finally:
        _kill_group(proc)  # nothing the rule started may outlive it
    wall = time.perf_counter() - start
    if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL) and not out:
        return SandboxResult(False, "cpu_time", f"the rule used more than its CPU limit "
                             f"of {limits.cpu_s:g} s and was killed", wall_s=wall)
    if proc.returncode != 0 or not out:
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        return SandboxResult(False, "crashed", f"the sandbox process ended with code "
                             f"{proc.returncode}: {' / '.join(tail)}", wall_s=wall)
    return _parse(out, shapes, wall)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _parse(out: bytes, shapes: list[tuple[int, ...]], wall: float) -> SandboxResult:
    stream = io.BytesIO(out)
    try:
        header = json.loads(stream.readline())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return SandboxResult(False, "crashed", "the sandbox wrote no readable result",
                             wall_s=wall)
    if not header.get("ok"):
        kind = header.get("kind")
        return SandboxResult(False, kind if kind in RESULT_KINDS else "crashed",
                             str(header.get("error", "")), wall_s=wall)
    masks = []
    try:
        for shape in shapes:
            mask = np.lib.format.read_array(stream, allow_pickle=False)
            if mask.dtype != np.bool_ or mask.shape != shape:
                return SandboxResult(False, "bad_output", f"got a {mask.dtype} {mask.shape} "
                                     f"mask, expected bool {shape}", wall_s=wall)
            masks.append(mask)
    except ValueError as e:
        return SandboxResult(False, "bad_output", f"unreadable output: {e}", wall_s=wall)
    cpu = header.get("cpu_s")
    return SandboxResult(True, "ok", masks=masks, wall_s=wall,
                         cpu_s=float(cpu) if isinstance(cpu, (int, float)) else None)
