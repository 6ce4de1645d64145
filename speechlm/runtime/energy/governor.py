"""Energy governors: policies called around every prefill and decode step.

The runtime calls ``begin(step)`` before a forward pass and ``end(step, seconds)`` after
it (synchronised, so ``seconds`` is the step's real latency). A governor may change clocks
or power limits there; it must not touch tensors, so it cannot change results. The
reference governors do nothing (``NullGovernor``) or keep a trace (``RecordingGovernor``,
handy to check that a policy would be called where expected).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

PHASES = ("prefill", "decode")


@dataclass(frozen=True)
class Step:
    """One forward pass the governor is told about.

    Args:
        phase: ``"prefill"`` (prompt / scored texts) or ``"decode"`` (one new token per row).
        batch_size: rows in the forward pass.
        num_tokens: new tokens per row in this pass (1 for decode).
        context_len: cached tokens before this pass (attention span grows with it).
    """

    phase: str
    batch_size: int
    num_tokens: int
    context_len: int = 0

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {self.phase!r}")
        if self.batch_size < 1 or self.num_tokens < 1 or self.context_len < 0:
            raise ValueError(f"bad step sizes: {self}")


class EnergyGovernor:
    """Base class: override ``begin``/``end``. Defaults do nothing."""

    name: ClassVar[str] = "base"

    def begin(self, step: Step) -> None:
        """Called right before the forward pass of ``step``."""

    def end(self, step: Step, seconds: float) -> None:
        """Called right after it, with its wall-clock latency."""

    def close(self) -> None:
        """Restore whatever the governor changed (clocks, power limits)."""


class NullGovernor(EnergyGovernor):
    """Reference governor: does nothing (the plug point's no-op)."""

    name: ClassVar[str] = "none"


class RecordingGovernor(EnergyGovernor):
    """Keeps ``(phase, batch_size, num_tokens, context_len, seconds)`` for every step.

    >>> g = RecordingGovernor()
    >>> s = Step("decode", batch_size=2, num_tokens=1, context_len=5)
    >>> g.begin(s); g.end(s, 0.01)
    >>> g.steps[0][:4]
    ('decode', 2, 1, 5)
    """

    name: ClassVar[str] = "recording"

    def __init__(self, max_steps: int = 100_000) -> None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.max_steps = max_steps
        self.steps: list[tuple[str, int, int, int, float]] = []
        self._open: Step | None = None

    def begin(self, step: Step) -> None:
        if self._open is not None:
            raise RuntimeError(f"begin({step}) before end() of {self._open}")
        self._open = step

    def end(self, step: Step, seconds: float) -> None:
        if self._open != step:
            raise RuntimeError(f"end({step}) does not match begin({self._open})")
        self._open = None
        if len(self.steps) < self.max_steps:
            self.steps.append(
                (step.phase, step.batch_size, step.num_tokens, step.context_len, seconds)
            )


class FrequencyDriver:
    """What a governor needs from hardware: lock the clock, and undo it.

    ``ZeusGpuDriver`` is the real one; tests pass a recording stand-in for the hardware.
    """

    def set_frequency(self, freq_mhz: int) -> None:
        raise NotImplementedError

    def restore(self) -> None:
        raise NotImplementedError


class ZeusGpuDriver(FrequencyDriver):
    """Locks one NVIDIA GPU's graphics clock through zeus (NVML); needs admin rights."""

    def __init__(self, gpu_index: int = 0) -> None:
        from zeus.device import get_gpus

        self.index, self._gpus = gpu_index, get_gpus()

    def set_frequency(self, freq_mhz: int) -> None:
        self._gpus.set_gpu_locked_clocks(self.index, freq_mhz, freq_mhz)

    def restore(self) -> None:
        self._gpus.reset_gpu_locked_clocks(self.index)


class PerseusGovernor(EnergyGovernor):
    """Runs each computation at the frequency of a Perseus plan (``speechlm energy plan``).

    ``start(node)`` looks the node up in the plan. In dry-run mode (the default) it only
    logs and records ``(node, freq, predicted time_s, predicted energy_j)`` and changes
    nothing. Otherwise it sets the clock through ``driver`` (a ``ZeusGpuDriver`` when none
    is given), which requires ``allow_clock_changes=True``; ``close()`` (also on leaving a
    ``with`` block, exception or not) restores the clock.

    As a runtime governor, ``begin(step)`` maps prefill to node ``"prefill"`` and the k-th
    decode step to ``"decode{k}"`` (the names of ``dag.decode_loop``); a step beyond the
    plan runs at the plan's frequency for its computation (``"decode"``).

    Args:
        plan: a plan dict (``planner.plan_to_json``) or the path of its JSON file.
        dry_run: log instead of setting clocks.
        allow_clock_changes: must be True for real mode; never set it on machines whose
            accelerator settings you may not change.
        driver: the hardware driver for real mode.
    """

    name: ClassVar[str] = "perseus"

    def __init__(self, plan: dict | str, dry_run: bool = True, allow_clock_changes: bool = False,
                 driver: FrequencyDriver | None = None) -> None:
        import json
        import logging

        from speechlm.runtime.energy.planner import check_plan_json

        self.log = logging.getLogger(__name__)
        origin = "<plan>"
        if isinstance(plan, str):
            origin = plan
            with open(plan) as f:
                plan = json.load(f)
        self.nodes = check_plan_json(plan, origin)
        self.by_computation = {v.get("computation"): v for v in self.nodes.values()}
        self.dry_run = dry_run
        if not dry_run and not allow_clock_changes:
            raise PermissionError("real mode changes GPU clocks: pass allow_clock_changes=True "
                                  "where that is permitted, or use dry_run=True")
        self.driver = None if dry_run else (driver or ZeusGpuDriver())
        self.trace: list[tuple[str, int, float | None, float | None]] = []
        self._changed = False
        self._decode = 0

    def entry(self, node: str, computation: str | None = None) -> dict:
        if node in self.nodes:
            return self.nodes[node]
        if computation in self.by_computation:
            return self.by_computation[computation]
        raise KeyError(f"node {node!r} is not in the plan (nor computation {computation!r})")

    def start(self, node: str, computation: str | None = None) -> int:
        """Called at a computation's start: set (or, dry-run, log) its planned frequency."""
        e = self.entry(node, computation)
        freq = int(e["freq"])
        self.trace.append((node, freq, e.get("time_s"), e.get("energy_j")))
        if self.dry_run:
            self.log.info("dry-run: %s at %d MHz (predicted %.4g s, %s J)", node, freq,
                          e.get("time_s") or float("nan"),
                          "null" if e.get("energy_j") is None else f"{e['energy_j']:.4g}")
        else:
            self._changed = True  # before the call: a half-done set must still be undone
            self.driver.set_frequency(freq)
        return freq

    def begin(self, step: Step) -> None:
        if step.phase == "prefill":
            self.start("prefill", "prefill")
        else:
            self.start(f"decode{self._decode}", "decode")
            self._decode += 1

    def close(self) -> None:
        if self._changed and self.driver is not None:
            self._changed = False
            self.driver.restore()

    def __enter__(self) -> PerseusGovernor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
