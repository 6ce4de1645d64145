"""Per-call runtime metrics: JSON lines and Prometheus text exposition.

Every LLM call (score, generate, chat, hidden_states) produces one ``CallRecord``;
``RuntimeMetrics`` keeps counters and histograms over them, appends each record as a
JSON line to an optional file, and renders everything in the Prometheus text format
(``prometheus_text()``) for the monitoring and serving work to expose.

Energy is recorded only when a meter could read it; otherwise the field is ``null`` in
JSON and the energy counter is absent from the exposition (never a made-up 0).

>>> m = RuntimeMetrics()
>>> m.record(CallRecord(kind="score", prompt_tokens=12, generated_tokens=0, prefill_s=0.01))
>>> 'speechlm_llm_prompt_tokens_total{kind="score"} 12' in m.prometheus_text()
True
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["CallRecord", "RuntimeMetrics", "Histogram"]

LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TOKEN_RATE_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
KIND_VALUES = ("score", "generate", "chat", "hidden_states")


@dataclass
class CallRecord:
    """One runtime call.

    Args:
        kind: ``"score"``, ``"generate"``, ``"chat"`` or ``"hidden_states"``.
        prompt_tokens: tokens fed through prefill (prompt / prefix + texts), padding excluded.
        generated_tokens: new tokens produced (0 for scoring).
        prefill_s: seconds spent in prefill forward passes.
        decode_s: seconds spent in decode steps.
        tokens_per_s: (prompt + generated tokens) / (prefill + decode seconds).
        peak_memory_bytes: peak accelerator memory during the call (CUDA), or the
            process's peak resident set size on the CPU (a process-lifetime peak).
        kv_cache_bytes: largest KV-cache size held during the call.
        energy_j: joules, or None when no meter could read energy.
        batch_size: sequences per forward pass (largest).
        num_sequences: prompts or texts in the call.
        unix_time: wall-clock time of the record.
    """

    kind: str
    prompt_tokens: int = 0
    generated_tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    tokens_per_s: float | None = None
    peak_memory_bytes: int | None = None
    kv_cache_bytes: int = 0
    energy_j: float | None = None
    batch_size: int = 0
    num_sequences: int = 0
    unix_time: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.kind not in KIND_VALUES:
            raise ValueError(f"kind must be one of {KIND_VALUES}, got {self.kind!r}")
        if self.prompt_tokens < 0 or self.generated_tokens < 0:
            raise ValueError("token counts must be >= 0")
        if self.tokens_per_s is None:
            seconds = self.prefill_s + self.decode_s
            if seconds > 0:
                self.tokens_per_s = (self.prompt_tokens + self.generated_tokens) / seconds


class Histogram:
    """A cumulative-bucket histogram (Prometheus semantics: ``le`` upper bounds)."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        if list(buckets) != sorted(buckets):
            raise ValueError(f"buckets must be sorted, got {buckets}")
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.sum += value
        for i, upper in enumerate(self.buckets):
            if value <= upper:
                self.counts[i] += 1

    def lines(self, name: str, labels: str) -> list[str]:
        out = []
        sep = "," if labels else ""
        for upper, n in zip(self.buckets, self.counts, strict=True):
            out.append(f'{name}_bucket{{{labels}{sep}le="{_fmt(upper)}"}} {n}')
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        out.append(f"{name}_sum{{{labels}}} {_fmt(self.sum)}")
        out.append(f"{name}_count{{{labels}}} {self.count}")
        return out


def _fmt(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


_COUNTERS = {
    "requests": ("speechlm_llm_requests_total", "Runtime calls."),
    "prompt_tokens": ("speechlm_llm_prompt_tokens_total", "Tokens fed through prefill."),
    "generated_tokens": ("speechlm_llm_generated_tokens_total", "Tokens generated."),
    "energy_j": ("speechlm_llm_energy_joules_total", "Measured energy (only where readable)."),
}
_HISTOGRAMS = {
    "prefill_s": ("speechlm_llm_prefill_seconds", "Prefill latency per call.", LATENCY_BUCKETS),
    "decode_s": ("speechlm_llm_decode_seconds", "Decode latency per call.", LATENCY_BUCKETS),
    "tokens_per_s": ("speechlm_llm_tokens_per_second", "Throughput per call.", TOKEN_RATE_BUCKETS),
}
_GAUGES = {
    "peak_memory_bytes": ("speechlm_llm_peak_memory_bytes", "Peak memory of the last call."),
    "kv_cache_bytes": ("speechlm_llm_kv_cache_bytes", "Largest KV cache of the last call."),
}


class RuntimeMetrics:
    """Thread-safe accumulator of ``CallRecord`` s.

    Args:
        path: optional JSON-lines file; each record is appended as one line.
        keep: how many recent records to keep in memory (``records``).
    """

    def __init__(self, path: str | Path | None = None, keep: int = 1000) -> None:
        if keep < 0:
            raise ValueError(f"keep must be >= 0, got {keep}")
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self.records: list[CallRecord] = []
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, str], float] = {}
        self._hists: dict[tuple[str, str], Histogram] = {}
        self._gauges: dict[tuple[str, str], float] = {}

    def record(self, rec: CallRecord) -> None:
        """Add one call's record (and append it to ``path`` as a JSON line)."""
        with self._lock:
            k = rec.kind
            self._add("requests", k, 1)
            self._add("prompt_tokens", k, rec.prompt_tokens)
            self._add("generated_tokens", k, rec.generated_tokens)
            if rec.energy_j is not None:
                self._add("energy_j", k, rec.energy_j)
            for attr, (_, _, buckets) in _HISTOGRAMS.items():
                value = getattr(rec, attr)
                if value is not None and not (attr == "decode_s" and rec.generated_tokens == 0):
                    self._hists.setdefault((attr, k), Histogram(buckets)).observe(value)
            for attr in _GAUGES:
                value = getattr(rec, attr)
                if value is not None:
                    self._gauges[(attr, k)] = value
            if self.keep:
                self.records.append(rec)
                del self.records[: -self.keep]
            if self.path is not None:
                with self.path.open("a") as f:
                    f.write(json.dumps(asdict(rec)) + "\n")

    def _add(self, attr: str, kind: str, value: float) -> None:
        self._counters[(attr, kind)] = self._counters.get((attr, kind), 0) + value

    def counter(self, attr: str, kind: str) -> float:
        """Current value of a counter (``"requests"``, ``"prompt_tokens"``, ...)."""
        return self._counters.get((attr, kind), 0)

    def prometheus_text(self) -> str:
        """All counters, histograms and gauges in Prometheus text exposition format 0.0.4."""
        lines: list[str] = []
        with self._lock:
            for attr, (name, help_) in _COUNTERS.items():
                series = sorted((k, v) for (a, k), v in self._counters.items() if a == attr)
                if not series:
                    continue
                lines += [f"# HELP {name} {help_}", f"# TYPE {name} counter"]
                lines += [f'{name}{{kind="{k}"}} {_fmt(v)}' for k, v in series]
            for attr, (name, help_, _) in _HISTOGRAMS.items():
                series = sorted((k, h) for (a, k), h in self._hists.items() if a == attr)
                if not series:
                    continue
                lines += [f"# HELP {name} {help_}", f"# TYPE {name} histogram"]
                for k, h in series:
                    lines += h.lines(name, f'kind="{k}"')
            for attr, (name, help_) in _GAUGES.items():
                series = sorted((k, v) for (a, k), v in self._gauges.items() if a == attr)
                if not series:
                    continue
                lines += [f"# HELP {name} {help_}", f"# TYPE {name} gauge"]
                lines += [f'{name}{{kind="{k}"}} {_fmt(v)}' for k, v in series]
        return "\n".join(lines) + "\n"
