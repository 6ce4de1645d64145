"""Decoding in worker processes, so that a long decode never stalls the server.

PocketSphinx holds the GIL for a whole utterance: decoding on the server's own threads
froze ``/healthz``, ``/metrics`` and the 429 answers for as long as a decode ran (issue 22).
Here each of ``processes`` workers is a process that loads the offered models once (through
the public ``speechlm.load_asr``) and decodes one utterance at a time; the server process
only parses HTTP and waits on pipes.

A job that is no longer wanted (its client went away) is dropped while queued, or stopped
by killing its worker, which is then started again. A worker that dies (a crash in native
code) fails its job with :class:`WorkerDied` and is restarted. :meth:`WorkerPool.close`
cancels queued jobs at once, lets running ones finish for ``grace`` seconds, then kills the
workers: stopping is bounded whatever a decoder does.
"""
from __future__ import annotations

import collections
import logging
import multiprocessing
import signal
import sys
import threading
import time
import traceback
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any

from speechlm.api import AudioLimits, AudioRejected, Transcript
from speechlm.bin.launch import die_with_parent

logger = logging.getLogger("speechlm.serve")

_DEFAULT_LIMITS = AudioLimits()
POLL_S = 0.05  # how often a waiting worker thread looks for a cancelled job or a deadline


class WorkerDied(RuntimeError):
    """The worker process decoding a job exited (crashed or was killed)."""


class Cancelled(Exception):
    """The job was stopped before it finished: its client went away or the server stops."""


class PoolClosed(RuntimeError):
    """The pool is stopping (the server got SIGTERM): no new work."""


@dataclass(frozen=True)
class ModelInfo:
    """What the server needs to know of a model loaded in the workers."""

    name: str
    sample_rate: int
    has_lattice: bool


@dataclass(eq=False)
class _Job:
    model: str
    audio: Any
    kwargs: dict
    future: Future = field(default_factory=Future)
    cancelled: threading.Event = field(default_factory=threading.Event)


def _worker_main(conn, models: dict[str, tuple[str, str | None]], nbest: int,
                 threads: int) -> None:
    """A worker process: load every model, then decode what comes down the pipe."""
    die_with_parent(signal.SIGKILL)  # a server killed with -9 leaves no decoders behind
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C hits the group; the server decides
    try:
        from speechlm.api import load_asr

        asrs = {name: load_asr(model, graph, nbest=nbest)
                for name, (model, graph) in models.items()}
        if "torch" in sys.modules:  # N workers share the cores instead of each taking all
            sys.modules["torch"].set_num_threads(threads)
    except Exception as e:  # a broken model dir: the server reports it and does not start
        conn.send(("failed", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", [ModelInfo(n, a.sample_rate, a.has_lattice) for n, a in asrs.items()]))
    while True:
        try:
            name, items = conn.recv()  # [(audio, kwargs)]: one request, or a batch of them
        except (EOFError, OSError):  # the server closed the pipe: stop
            return
        conn.send(_decode_items(asrs[name], items))


def _decode_items(asr, items: list[tuple[Any, dict]]) -> list[tuple]:
    """One reply per item. A batch (items share every option but ``utt``) goes through one
    ``ASR.transcribe`` call, so backends with padded batches decode it together; audio that
    is rejected is answered alone and does not fail its neighbours."""
    try:
        if len(items) == 1:
            audio, kwargs = items[0]
            return [("ok", asr(audio, **kwargs))]
        options = {k: v for k, v in items[0][1].items() if k != "utt"}
        outs = asr.transcribe([a for a, _ in items], options.pop("sample_rate", None),
                              utts=[kw.get("utt", "utt") for _, kw in items],
                              batch_size=len(items), errors="return", **options)
        return [("ok", o) if not isinstance(o, AudioRejected) else ("rejected", o.code, str(o))
                for o in outs]
    except AudioRejected as e:
        return [("rejected", e.code, str(e))] * len(items)
    except ValueError as e:  # the decoder refused this input
        return [("value_error", str(e))] * len(items)
    except Exception:
        return [("error", traceback.format_exc())] * len(items)


class WorkerPool:
    """``processes`` decoding processes over one unbounded job queue (the server bounds it).

    Args:
        models: served name -> ``(model, graph)``, the arguments of ``speechlm.load_asr``.
        nbest: hypotheses kept per utterance.
        processes: worker processes.
        max_batch: requests a worker takes at once (dynamic batching): when it becomes free
            it takes the oldest queued request and up to ``max_batch - 1`` more queued ones
            for the same model with the same options, decoded in one call.
        start_timeout: seconds a worker may take to load its models.
    """

    def __init__(self, models: dict[str, tuple[str, str | None]], *, nbest: int,
                 processes: int, max_batch: int = 1, start_timeout: float = 300.0) -> None:
        if processes < 1:
            raise ValueError(f"need processes >= 1, got {processes}")
        if max_batch < 1:
            raise ValueError(f"need max_batch >= 1, got {max_batch}")
        self.max_batch = max_batch
        self.batch_sizes: collections.Counter[int] = collections.Counter()  # for /metrics
        self.models = dict(models)
        self.nbest = nbest
        self.processes = processes
        self.start_timeout = start_timeout
        self.info: dict[str, ModelInfo] = {}
        self._ctx = multiprocessing.get_context("spawn")  # the server has threads: no fork
        self._cond = threading.Condition()
        self._queue: collections.deque[_Job] = collections.deque()
        self._jobs: dict[Future, _Job] = {}
        self._closing = False
        self._kill_at: float | None = None
        self._broken: str | None = None
        self._workers: list[_Worker] = []
        self._start_lock = threading.Lock()

    @property
    def started(self) -> bool:
        return bool(self._workers)

    def start(self) -> None:
        """Start the workers and wait until each has loaded the models.

        Raises:
            ValueError: a worker could not load a model (the message says which error).
        """
        with self._start_lock:
            if self._workers:
                return
            workers = [_Worker(self, i) for i in range(self.processes)]
            for w in workers:
                w.start()
            for w in workers:
                w.ready.wait()
            self._workers = workers
        if self._broken is not None:
            self.close(0)
            raise ValueError(f"decode workers could not load the models: {self._broken}")

    def submit(self, model: str, audio: Any, **kwargs: Any) -> Future:
        """Queue one decode: the future gives the :class:`Transcript`."""
        if not self._workers:
            self.start()
        job = _Job(model, audio, kwargs)
        with self._cond:
            if self._closing or self._broken is not None:
                raise PoolClosed("the server is stopping" if self._closing else self._broken)
            self._queue.append(job)
            self._jobs[job.future] = job
            self._cond.notify()
        job.future.add_done_callback(self._forget)
        return job.future

    def cancel(self, future: Future) -> None:
        """Drop a queued job, or stop a running one (its worker is restarted)."""
        with self._cond:
            job = self._jobs.get(future)
            if job is None:
                return
            job.cancelled.set()
            if job in self._queue:
                self._queue.remove(job)
                future.cancel()

    def pids(self) -> list[int]:
        """Process ids of the live workers (for their memory in /metrics)."""
        return [w.proc.pid for w in self._workers if w.proc is not None]

    def queued(self) -> int:
        with self._cond:
            return len(self._queue)

    def begin_close(self, grace: float) -> None:
        """Stop taking work: cancel queued jobs now, running ones after ``grace`` seconds.
        Returns at once (safe to call from the event loop)."""
        with self._cond:
            if not self._closing:
                self._closing = True
                self._kill_at = time.monotonic() + grace
            for job in self._queue:
                job.future.cancel()
            self._queue.clear()
            self._cond.notify_all()

    def close(self, grace: float = 10.0) -> None:
        """:meth:`begin_close`, then wait (at most ``grace`` + a little) for the workers."""
        self.begin_close(grace)
        deadline = time.monotonic() + grace + 5.0
        for w in self._workers:
            w.join(max(0.0, deadline - time.monotonic()))

    # ---- used by the worker threads ----
    def _forget(self, future: Future) -> None:
        with self._cond:
            self._jobs.pop(future, None)

    def _next_jobs(self) -> list[_Job] | None:
        """The oldest queued job and up to ``max_batch - 1`` queued ones like it; None when
        the pool closes."""
        with self._cond:
            while not self._queue and not self._closing:
                self._cond.wait()
            if self._closing:
                return None
            first = self._queue.popleft()
            jobs = [first]
            options = {k: v for k, v in first.kwargs.items() if k != "utt"}
            for job in list(self._queue):
                if len(jobs) >= self.max_batch:
                    break
                if job.model == first.model and \
                        {k: v for k, v in job.kwargs.items() if k != "utt"} == options:
                    self._queue.remove(job)
                    jobs.append(job)
            return jobs

    def _past_deadline(self) -> bool:
        return self._kill_at is not None and time.monotonic() >= self._kill_at

    def _fail(self, message: str) -> None:
        with self._cond:
            self._broken = message
            for job in self._queue:
                job.future.set_exception(RuntimeError(message))
            self._queue.clear()


class _Worker(threading.Thread):
    """One worker process and the server thread that feeds it (and restarts it)."""

    def __init__(self, pool: WorkerPool, index: int) -> None:
        super().__init__(name=f"speechlm-decode-{index}", daemon=True)
        self.pool = pool
        self.index = index
        self.ready = threading.Event()
        self.proc = None
        self.conn = None

    def run(self) -> None:
        try:
            while True:
                if self.proc is None and not self.pool._closing and not self._spawn():
                    return
                self.ready.set()
                jobs = self.pool._next_jobs()
                if jobs is None:
                    return
                jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]
                if jobs:
                    self.pool.batch_sizes[len(jobs)] += 1
                    self._run(jobs)
        finally:
            self.ready.set()
            self._stop()

    def _spawn(self) -> bool:
        parent, child = self.pool._ctx.Pipe()
        proc = self.pool._ctx.Process(
            target=_worker_main, name=f"speechlm-decode-{self.index}", daemon=True,
            args=(child, self.pool.models, self.pool.nbest,
                  max(1, (multiprocessing.cpu_count() or 1) // self.pool.processes)))
        proc.start()
        child.close()
        ready = wait([parent, proc.sentinel], timeout=self.pool.start_timeout)
        msg: tuple = ("failed", "timed out loading the models")
        if parent in ready:
            try:
                msg = parent.recv()
            except EOFError:
                msg = ("failed", f"the worker exited with code {proc.exitcode}")
        elif ready:
            proc.join(1)
            msg = ("failed", f"the worker exited with code {proc.exitcode}")
        if msg[0] != "ready":
            proc.kill()
            parent.close()
            self.pool._fail(msg[1])
            return False
        self.pool.info.update({m.name: m for m in msg[1]})
        self.proc, self.conn = proc, parent
        return True

    def _run(self, jobs: list[_Job]) -> None:
        def fail(error: Exception) -> None:
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(error)

        try:
            self.conn.send((jobs[0].model, [(job.audio, job.kwargs) for job in jobs]))
        except (OSError, ValueError) as e:  # a dead worker's pipe, or unpicklable input
            self._restart()
            fail(WorkerDied(f"could not hand the job to a worker: {e}"))
            return
        while True:
            ready = wait([self.conn, self.proc.sentinel], timeout=POLL_S)
            if self.conn in ready:
                try:
                    replies = self.conn.recv()
                except (EOFError, OSError):
                    replies = None
                if replies is not None:
                    for job, reply in zip(jobs, replies, strict=True):
                        _deliver(job.future, reply)
                    return
            if ready:  # the pipe closed or the process ended without a reply
                code = self.proc.exitcode
                self._restart()
                fail(WorkerDied(f"the decode worker died (exit code {code}); the job was "
                                "not finished"))
                return
            # a batch is stopped only when no client is left waiting for it
            if all(job.cancelled.is_set() for job in jobs) or self.pool._past_deadline():
                self._restart()  # the only way to stop a decoder in native code
                fail(Cancelled("stopped: the client went away or the server is stopping"))
                return

    def _restart(self) -> None:
        self._stop()  # the loop in run() starts a new one unless the pool is closing

    def _stop(self) -> None:
        if self.proc is not None:
            self.conn.close()
            self.proc.kill()
            self.proc.join(5)
            self.proc = self.conn = None


def _deliver(future: Future, reply: tuple) -> None:
    kind = reply[0]
    if kind == "ok":
        future.set_result(reply[1])
    elif kind == "rejected":
        future.set_exception(AudioRejected(reply[1], reply[2]))
    elif kind == "value_error":
        future.set_exception(ValueError(reply[1]))
    else:
        logger.error("decode failed in a worker process:\n%s", reply[1])
        future.set_exception(RuntimeError("decode failed in a worker process (logged)"))


class RemoteASR:
    """Stands for a model loaded in the workers: the same call as ``speechlm.ASR``, decoded
    in a worker process (the demo calls it like a local model)."""

    def __init__(self, pool: WorkerPool, info: ModelInfo) -> None:
        self._pool = pool
        self.name = info.name
        self.sample_rate = info.sample_rate
        self.has_lattice = info.has_lattice

    def __repr__(self) -> str:
        return f"RemoteASR({self.name!r}, lattice={self.has_lattice})"

    def __call__(self, audio: Any, sample_rate: int | None = None, *, utt: str = "utt",
                 wcn: bool = True, limits: AudioLimits = _DEFAULT_LIMITS) -> Transcript:
        future = self._pool.submit(self.name, audio, sample_rate=sample_rate, utt=utt,
                                   wcn=wcn, limits=limits)
        try:
            return future.result()
        finally:
            self._pool.cancel(future)  # no-op when done; stops it when this thread is gone
