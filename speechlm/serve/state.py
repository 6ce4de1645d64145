"""What the API and the demo share: models loaded once, a bounded queue, counters.

Decoding runs in worker processes (``workers.py``) unless ``decode_processes=False``, so
the server process stays free to answer health checks, metrics and 429s while decoders
work. No FastAPI or Gradio here, so this part is testable on its own.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechlm.api import POCKETSPHINX, AudioLimits, load_asr
from speechlm.runtime.metrics import LATENCY_BUCKETS, Histogram


@dataclass(frozen=True)
class ModelSpec:
    """An ASR model the server offers, by name (requests name it; they never give paths).

    Args:
        name: what clients pass as ``model``.
        model: ``"pocketsphinx"`` or a recipe model dir.
        graph: decoding graph dir for a model dir (lattices, WCN); None = beam search.
    """

    name: str
    model: str = POCKETSPHINX
    graph: str | None = None


@dataclass(frozen=True)
class GuardConfig:
    """Request checks applied by ``guard.Guard`` before the app reads a body.

    Args:
        allowed_hosts: ``Host`` names (without port) answered; None answers any (an app
            embedded behind a proxy that checks them). ``speechlm serve`` passes the
            loopback names and the bound address.
        api_key: required for ``/v1/*`` when set.
        body_timeout_s: a request body must arrive within this many seconds of the
            request's start (408 after).
        max_uploads: demo uploads in flight at once (429 above).
    """

    allowed_hosts: tuple[str, ...] | None = None
    api_key: str | None = None
    body_timeout_s: float = 30.0
    max_uploads: int = 4

    def __repr__(self) -> str:  # never print the key
        return (f"GuardConfig(allowed_hosts={self.allowed_hosts}, api_key="
                f"{'set' if self.api_key else None}, body_timeout_s={self.body_timeout_s}, "
                f"max_uploads={self.max_uploads})")

    def __post_init__(self) -> None:
        if self.body_timeout_s <= 0 or self.max_uploads < 1:
            raise ValueError("need body_timeout_s > 0 and max_uploads >= 1")
        if self.api_key is not None and len(self.api_key) < 16:
            raise ValueError("an API key needs at least 16 characters")


@dataclass(frozen=True)
class ServeConfig:
    """Limits and defaults of the server.

    Args:
        models: ASR models offered; the first is the default.
        max_upload_bytes: larger request bodies get 413 before they are read.
        max_seconds: longer audio gets 422.
        max_concurrency: requests decoding at once: the number of decode worker
            processes (or threads without ``decode_processes``).
        max_waiting: requests queued behind those; more get 429 (before the body is read).
        max_batch: requests a decode worker takes at once (dynamic batching of queued
            requests for the same model and options; for backends with padded batches,
            e.g. Whisper on a GPU). 1: one at a time.
        max_nbest: largest ``nbest`` a request may ask for (models keep this many).
        llm_scale: default weight of the LLM log-probability in rescoring.
        scorers: trained second-pass scorer dirs (``speechlm rescore train --method
            mwer|pll``) that ``/v1/rescore`` may use, named by path or dir name.
        decode_processes: decode in worker processes that each load the models once (the
            server stays responsive during a decode); False decodes on threads of the
            server process (an ASR object put in by a caller, as tests do).
        drain_seconds: on shutdown, running decodes get this long before their workers
            are killed; queued ones are cancelled at once.
        guard: Host allow-list, API key, body deadline, demo upload limit (``guard.py``).
    """

    models: tuple[ModelSpec, ...] = (ModelSpec(POCKETSPHINX),)
    max_upload_bytes: int = 10 << 20
    max_seconds: float = 30.0
    max_concurrency: int = 1
    max_waiting: int = 8
    max_batch: int = 1
    max_nbest: int = 10
    llm_scale: float = 0.5
    scorers: tuple[str, ...] = ()
    decode_processes: bool = True
    drain_seconds: float = 10.0
    guard: GuardConfig = field(default_factory=GuardConfig)

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("at least one ASR model is needed")
        for d in self.scorers:
            if not any((Path(d) / f).is_file() for f in ("mwer.json", "pll.json")):
                raise ValueError(f"scorer {d}: not a scorer dir (no mwer.json or pll.json; "
                                 "train one with 'speechlm rescore train --method mwer|pll')")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique, got {names}")
        if self.max_concurrency < 1 or self.max_waiting < 0 or self.max_batch < 1:
            raise ValueError("need max_concurrency >= 1, max_waiting >= 0, max_batch >= 1")
        if self.max_nbest < 1 or self.max_upload_bytes < 1024 or self.max_seconds <= 0:
            raise ValueError("need max_nbest >= 1, max_upload_bytes >= 1024, max_seconds > 0")
        if self.drain_seconds < 0:
            raise ValueError(f"need drain_seconds >= 0, got {self.drain_seconds}")

    def limits(self, mix_channels: bool) -> AudioLimits:
        return AudioLimits(max_seconds=self.max_seconds, max_bytes=self.max_upload_bytes,
                           mix_channels=mix_channels)


class QueueFull(Exception):
    """More requests than ``max_concurrency + max_waiting``: answered with 429."""


class ServeMetrics:
    """Request counters and latencies in Prometheus text form (the runtime's own counters
    are appended by the app)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.latency: dict[str, Histogram] = {}
        self.rejected: dict[str, int] = {}
        self.audio_seconds = 0.0
        self.decode_seconds = 0.0

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(endpoint, status)] = self.requests.get((endpoint, status), 0) + 1
            self.latency.setdefault(endpoint, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def reject(self, reason: str) -> None:
        with self._lock:
            self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def decoded(self, audio_s: float, decode_s: float) -> None:
        with self._lock:
            self.audio_seconds += audio_s
            self.decode_seconds += decode_s

    def prometheus_text(self, queue_depth: int, worker_pids: list[int] = ()) -> str:
        lines = ["# HELP speechlm_serve_requests_total HTTP requests by endpoint and status.",
                 "# TYPE speechlm_serve_requests_total counter"]
        with self._lock:
            lines += [f'speechlm_serve_requests_total{{endpoint="{e}",status="{s}"}} {n}'
                      for (e, s), n in sorted(self.requests.items())]
            lines += ["# HELP speechlm_serve_request_seconds Request latency.",
                      "# TYPE speechlm_serve_request_seconds histogram"]
            for e, h in sorted(self.latency.items()):
                lines += h.lines("speechlm_serve_request_seconds", f'endpoint="{e}"')
            lines += ["# HELP speechlm_serve_rejected_total Requests refused before work "
                      "(queue full, body too large).",
                      "# TYPE speechlm_serve_rejected_total counter"]
            lines += [f'speechlm_serve_rejected_total{{reason="{r}"}} {n}'
                      for r, n in sorted(self.rejected.items())]
            lines += ["# HELP speechlm_serve_audio_seconds_total Seconds of audio decoded.",
                      "# TYPE speechlm_serve_audio_seconds_total counter",
                      f"speechlm_serve_audio_seconds_total {self.audio_seconds:.3f}",
                      "# HELP speechlm_serve_decode_seconds_total Seconds spent decoding.",
                      "# TYPE speechlm_serve_decode_seconds_total counter",
                      f"speechlm_serve_decode_seconds_total {self.decode_seconds:.3f}"]
        lines += ["# HELP speechlm_serve_queue_depth Requests decoding or waiting.",
                  "# TYPE speechlm_serve_queue_depth gauge",
                  f"speechlm_serve_queue_depth {queue_depth}"]
        rss = resident_bytes()
        if rss is not None:
            lines += ["# HELP speechlm_serve_resident_memory_bytes Resident set size now.",
                      "# TYPE speechlm_serve_resident_memory_bytes gauge",
                      f"speechlm_serve_resident_memory_bytes {rss}"]
        if worker_pids:
            sizes = [resident_bytes(p) for p in worker_pids]
            lines += ["# HELP speechlm_serve_worker_resident_memory_bytes Resident set size of "
                      "the decode worker processes, summed.",
                      "# TYPE speechlm_serve_worker_resident_memory_bytes gauge",
                      f"speechlm_serve_worker_resident_memory_bytes "
                      f"{sum(x for x in sizes if x is not None)}",
                      "# HELP speechlm_serve_workers Live decode worker processes.",
                      "# TYPE speechlm_serve_workers gauge",
                      f"speechlm_serve_workers {len(worker_pids)}"]
        return "\n".join(lines) + "\n"


def resident_bytes(pid: int | str = "self") -> int | None:
    """Current resident set size of a process (Linux ``/proc``), None elsewhere."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@dataclass
class ServeState:
    """Models (each loaded once, by ``warm_up`` or on first use), the LLM, the queue.

    Args:
        config: limits and the offered models.
        llm: the runtime's LLM for rescoring, or None.
        llm_name: its name in responses.
        slu: an SLU callable (``speechlm.slu(...)``), or None.
    """

    config: ServeConfig = field(default_factory=ServeConfig)
    llm: Any = None
    llm_name: str | None = None
    slu: Any = None

    def __post_init__(self) -> None:
        self.metrics = ServeMetrics()
        self._asr: dict[str, Any] = {}  # name -> ASR (threads) or RemoteASR (processes)
        self._load_locks = {m.name: threading.Lock() for m in self.config.models}
        self._specs = {m.name: m for m in self.config.models}
        # LLM work (rescoring, SLU) and, without worker processes, decoding
        self._pool = ThreadPoolExecutor(self.config.max_concurrency,
                                        thread_name_prefix="speechlm-serve")
        self._workers = None
        if self.config.decode_processes:
            from speechlm.serve.workers import WorkerPool

            self._workers = WorkerPool({m.name: (m.model, m.graph) for m in self.config.models},
                                       nbest=self.config.max_nbest,
                                       processes=self.config.max_concurrency,
                                       max_batch=self.config.max_batch)
        self._slots = threading.BoundedSemaphore(self.config.max_concurrency
                                                 + self.config.max_waiting)
        self._depth = 0
        self._depth_lock = threading.Lock()
        self.started = time.time()

    @property
    def model_names(self) -> list[str]:
        return list(self._specs)

    def is_loaded(self, name: str) -> bool:
        if name in self._asr:
            return True
        return self._workers is not None and self._workers.started and name in self._workers.info

    def asr(self, name: str | None = None):
        """The named model (default: the first), loaded at most once: an ``ASR``, or with
        worker processes a ``RemoteASR`` (same call, decoded in a worker).

        Raises:
            KeyError: a name the server does not offer.
        """
        name = name or self.config.models[0].name
        if name not in self._specs:
            raise KeyError(name)
        if name not in self._asr:
            with self._load_locks[name]:
                if name not in self._asr:
                    self._asr[name] = self._load(name)
        return self._asr[name]

    def _load(self, name: str):
        if self._workers is not None:
            from speechlm.serve.workers import RemoteASR

            self._workers.start()  # every worker loads every model, once
            return RemoteASR(self._workers, self._workers.info[name])
        spec = self._specs[name]
        return load_asr(spec.model, spec.graph, nbest=self.config.max_nbest)

    def warm_up(self) -> None:
        """Load every offered model now (so the first request does not pay for it)."""
        for name in self._specs:
            self.asr(name)

    @property
    def queue_depth(self) -> int:
        return self._depth

    def worker_pids(self) -> list[int]:
        return self._workers.pids() if self._workers is not None else []

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the ``max_concurrency + max_waiting`` places for a request, or raise
        :class:`QueueFull` at once (the app takes it before reading the body)."""
        self._acquire()
        try:
            yield
        finally:
            self._release()

    def _acquire(self) -> None:
        if not self._slots.acquire(blocking=False):
            self.metrics.reject("queue_full")
            raise QueueFull(f"{self.config.max_concurrency + self.config.max_waiting} "
                            "requests are already running or queued; retry later")
        with self._depth_lock:
            self._depth += 1

    def _release(self, _future: Future | None = None) -> None:
        with self._depth_lock:
            self._depth -= 1
        self._slots.release()

    def transcribe(self, model: str | None, audio: Any, **kwargs: Any) -> Future:
        """Decode ``audio`` with the named model (``ASR.__call__``'s keyword arguments);
        the future gives the ``Transcript``. Cancel it with :meth:`cancel`."""
        asr = self.asr(model)
        if self._workers is not None:
            return self._workers.submit(asr.name, audio, **kwargs)
        return self._pool.submit(asr, audio, **kwargs)

    def cancel(self, future: Future) -> None:
        """Drop a queued decode or stop a running one (its client went away)."""
        if self._workers is not None:
            self._workers.cancel(future)
        else:
            future.cancel()  # a thread cannot be stopped; a queued job can

    def run_in_thread(self, fn, *args, **kwargs) -> Future:
        """``fn`` on the server's threads (LLM work), inside a slot the caller holds."""
        return self._pool.submit(fn, *args, **kwargs)

    def submit(self, fn, *args, **kwargs) -> Future:
        """Run ``fn`` on the server's threads in a slot of its own, or raise
        :class:`QueueFull` at once."""
        self._acquire()
        try:
            future = self._pool.submit(fn, *args, **kwargs)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(self._release)
        return future

    def llm_figures(self) -> dict[str, Any]:
        """The runtime's figures of the last LLM call (tokens/s, latency, backend)."""
        if self.llm is None:
            return {}
        out: dict[str, Any] = {"llm": self.llm_name}
        engine = getattr(self.llm, "engine", None)
        if engine is not None:
            out["attention_backend"] = engine.attention.name
        records = getattr(self.llm.metrics, "records", [])
        if records:
            rec = records[-1]
            out.update(tokens_per_s=None if rec.tokens_per_s is None
                       else round(rec.tokens_per_s, 1),
                       llm_latency_s=round(rec.prefill_s + rec.decode_s, 4),
                       prompt_tokens=rec.prompt_tokens)
        return out

    def begin_close(self) -> None:
        """Stop taking decodes: queued ones are cancelled now, running ones get
        ``drain_seconds``. Returns at once (called from the event loop on SIGTERM)."""
        if self._workers is not None:
            self._workers.begin_close(self.config.drain_seconds)

    def close(self) -> None:
        """Stop everything within about ``drain_seconds``."""
        if self._workers is not None:
            self._workers.close(self.config.drain_seconds)
        self._pool.shutdown(wait=False, cancel_futures=True)
