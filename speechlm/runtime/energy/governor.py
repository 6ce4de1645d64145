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
