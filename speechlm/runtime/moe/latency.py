"""The CPU-vs-copy latency model of Fiddler, measured at start-up on the machine it runs on.

For an expert that is not on the GPU and receives ``n`` tokens in a step there are two
ways to run it (Fiddler, arXiv 2402.07033, section 3.2):

* ``cpu``: move the ``n`` activations to the CPU, run the expert there, move the result
  back: ``cpu_s(n) + transfer_s(n)``;
* ``copy``: copy the expert's weights to the GPU and run it there: ``copy_s + device_s(n)``.

CPU time grows with ``n`` (from memory-bound to compute-bound); the copy costs the same
for any ``n``. So decode (few tokens) goes to the CPU and long prefill to weight copies,
and where the crossover lies depends on the machine: hence measurements, not constants.

>>> lm = LatencyModel(tokens=(1, 64), cpu_s=(0.02, 0.2), device_s=(1e-4, 2e-4),
...                   transfer_s=(1e-5, 5e-5), copy_s=0.03, expert_bytes=352 * 2**20)
>>> lm.choose(1), lm.choose(64), lm.crossover()
('cpu', 'copy', 5)
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


def _interp(xs: Sequence[int], ys: Sequence[float], x: float) -> float:
    """Piecewise-linear in ``x``; flat below the first point, the last slope beyond."""
    if x <= xs[0] or len(xs) == 1:
        return ys[0]
    i = min(bisect.bisect_left(xs, x), len(xs) - 1)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


@dataclass(frozen=True)
class LatencyModel:
    """Measured costs of one expert, in seconds.

    Args:
        tokens: token counts the per-token curves were measured at (increasing).
        cpu_s: CPU expert time at each token count.
        device_s: compute-device expert time at each token count (weights on the device).
        transfer_s: activations to the CPU and the result back, at each token count.
        copy_s: copying one expert's weights to the device.
        expert_bytes: bytes of one expert (for the bandwidth figure).
    """

    tokens: tuple[int, ...]
    cpu_s: tuple[float, ...]
    device_s: tuple[float, ...]
    transfer_s: tuple[float, ...]
    copy_s: float
    expert_bytes: int

    def __post_init__(self) -> None:
        n = len(self.tokens)
        if n == 0 or any(len(v) != n for v in (self.cpu_s, self.device_s, self.transfer_s)):
            raise ValueError("tokens, cpu_s, device_s and transfer_s need one value per count")
        if list(self.tokens) != sorted(set(self.tokens)) or self.tokens[0] < 1:
            raise ValueError(f"tokens must be increasing counts >= 1, got {self.tokens}")
        values = (*self.cpu_s, *self.device_s, *self.transfer_s, self.copy_s)
        if any(not (v >= 0.0) for v in values):  # also rejects NaN
            raise ValueError("measured times must be >= 0")

    def cpu_cost(self, n: int) -> float:
        """Seconds to run an offloaded expert on ``n`` tokens on the CPU."""
        return _interp(self.tokens, self.cpu_s, n) + _interp(self.tokens, self.transfer_s, n)

    def copy_cost(self, n: int) -> float:
        """Seconds to copy an offloaded expert to the device and run ``n`` tokens there."""
        return self.copy_s + _interp(self.tokens, self.device_s, n)

    def choose(self, n: int) -> str:
        """``"cpu"`` or ``"copy"``, whichever the measurements say is faster (CPU on ties)."""
        return "cpu" if self.cpu_cost(n) <= self.copy_cost(n) else "copy"

    def crossover(self, limit: int = 1 << 16) -> int | None:
        """Smallest token count that goes to ``copy`` (None: the CPU wins up to ``limit``)."""
        if self.choose(1) == "copy":
            return 1
        lo = 1
        # the cost difference is piecewise linear between measured points: find the first
        # segment that ends on "copy", then bisect inside it
        for hi in (*self.tokens, limit):
            if hi <= lo:
                continue
            if self.choose(hi) == "copy":
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    lo, hi = (lo, mid) if self.choose(mid) == "copy" else (mid, hi)
                return hi
            lo = hi
        return None

    @property
    def copy_bytes_per_s(self) -> float:
        return self.expert_bytes / self.copy_s if self.copy_s > 0 else float("inf")

    def describe(self) -> str:
        cross = self.crossover()
        return (
            f"expert {self.expert_bytes / 1e6:.1f} MB; copy {self.copy_s * 1e3:.2f} ms "
            f"({self.copy_bytes_per_s / 1e9:.1f} GB/s); cpu@1 {self.cpu_cost(1) * 1e3:.2f} ms; "
            f"device@1 {_interp(self.tokens, self.device_s, 1) * 1e3:.3f} ms; "
            f"copy wins from {cross if cross is not None else 'never'} tokens"
        )


def _time(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median seconds of ``fn`` after one warm-up run (synchronizing a CUDA device)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *_: None)
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def measure_latency(
    *,
    cpu_expert: Callable[[torch.Tensor], torch.Tensor],
    device_expert: Callable[[torch.Tensor], torch.Tensor],
    copy_in: Callable[[], object],
    hidden_size: int,
    dtype: torch.dtype,
    device: torch.device,
    expert_bytes: int,
    tokens: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128),
    repeats: int = 3,
) -> LatencyModel:
    """Time the executor's own kernels on one real expert of the model.

    Args:
        cpu_expert: ``x (n, D)`` on the CPU -> ``(n, D)``: the CPU expert path.
        device_expert: ``x (n, D)`` on the device -> ``(n, D)``: the device expert path.
        copy_in: copies one offloaded expert's weights into a device staging slot.
        hidden_size: D.
        tokens: token counts to measure at.
        repeats: timed runs per point (the median is kept).
    """
    tokens = tuple(sorted(set(tokens)))
    cpu_s, device_s, transfer_s = [], [], []
    with torch.inference_mode():
        for n in tokens:
            x_cpu = torch.randn(n, hidden_size, dtype=dtype)  # (n, D)
            x_dev = x_cpu.to(device)
            cpu_s.append(_time(lambda x=x_cpu: cpu_expert(x), device, repeats))
            device_s.append(_time(lambda x=x_dev: device_expert(x), device, repeats))
            transfer_s.append(
                _time(lambda x=x_dev: x.to("cpu").to(device, non_blocking=True), device, repeats)
            )
        copy_s = _time(copy_in, device, repeats)
    return LatencyModel(
        tokens=tokens,
        cpu_s=tuple(cpu_s),
        device_s=tuple(device_s),
        transfer_s=tuple(transfer_s),
        copy_s=copy_s,
        expert_bytes=expert_bytes,
    )


__all__ = ["LatencyModel", "measure_latency"]
