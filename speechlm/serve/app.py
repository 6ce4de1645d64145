"""The HTTP API (FastAPI): transcribe, rescore, health and Prometheus metrics.

    POST /v1/transcribe   multipart: file (audio), model, nbest, wcn, lattice, rescore,
                          mix_channels, utt -> 1-best, N-best (an nbest.jsonl line), WCN
                          (a cn.jsonl line), CTM lines, optional lattice and LLM rescoring
    POST /v1/audio/transcriptions  OpenAI-compatible: file, model (a served name or
                          whisper-1 for the default), response_format json | text |
                          verbose_json (word timestamps); errors in OpenAI's shape
    POST /v1/rescore      JSON: {"hyps": [{"text", "score"?}], "method"?, "model"?,
                          "prefix"?, "llm_scale"?, "threshold"?}: re-rank with a second-pass
                          method (lm, lm_norm, prompt, tap, ger-select, ger-free, or the
                          trained scorers mwer/pll served with --scorer DIR)
    GET  /healthz         models offered/loaded, LLM, queue depth
    GET  /metrics         request counters + the runtime's counters (Prometheus text)

Every error is JSON ``{"error": {"code", "message"}}`` with a 4xx status (503 while the
server stops, 500 only for a bug, without a stack trace). A request takes its place in the
bounded queue before its body is read (429 when there is none); decoding runs in worker
processes, so health checks, metrics and 429s stay fast while decoders work, and a client
that disconnects has its queued or running decode cancelled. Upload bodies are read
through starlette's form parser (which spools parts over 1 MB to a temporary file that it
deletes after the request) up to ``max_upload_bytes``, then passed to a worker as bytes.

>>> from speechlm.serve.state import ServeState
>>> app = create_app(ServeState())
>>> sorted(p for p in app.openapi()["paths"])
['/healthz', '/metrics', '/v1/audio/transcriptions', '/v1/rescore', '/v1/transcribe']
"""
# No ``from __future__ import annotations``: FastAPI reads the route signatures at run time,
# and the form limits come from the config inside ``create_app``.
import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from speechlm.api import (
    SECOND_PASS_METHODS,
    TRAINED_METHODS,
    AudioRejected,
    rescore_nbest,
    rescore_ranked,
    rescored_json,
)
from speechlm.serve.guard import Guard
from speechlm.serve.state import QueueFull, ServeState
from speechlm.serve.workers import Cancelled, PoolClosed

logger = logging.getLogger("speechlm.serve")

UTT_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
MAX_JSON_BYTES = 1 << 20


# ---- schemas ---------------------------------------------------------------------------
class ErrorBody(BaseModel):
    code: str = Field(description="short reason, e.g. not_audio, too_long, queue_full")
    message: str = Field(description="what is wrong, for a person")


class ErrorResponse(BaseModel):
    error: ErrorBody


class Hyp(BaseModel):
    text: str
    score: float
    scores: dict[str, float] | None = None


class NbestLine(BaseModel):
    """One line of ``speechlm decode``'s nbest.jsonl."""
    utt: str
    hyps: list[Hyp]


class BinEntry(BaseModel):
    word: str
    posterior: float
    start: float
    end: float


class CnLine(BaseModel):
    """One line of ``speechlm decode``'s cn.jsonl (``"<eps>"`` = no word)."""
    utt: str
    bins: list[list[BinEntry]]


class RescoredHyp(BaseModel):
    text: str
    score: float = Field(description="the ASR score, natural log")
    llm_score: float = Field(description="LLM log-probability, natural log")
    tot_score: float = Field(description="score + llm_scale * llm_score")


class TranscribeResponse(BaseModel):
    utt: str
    text: str = Field(description="1-best")
    model: str
    duration: float = Field(description="seconds of audio")
    sample_rate: int = Field(description="of the upload, Hz")
    channels: int
    decode_seconds: float
    nbest: NbestLine
    wcn: CnLine | None = None
    ctm: list[str] = Field(default_factory=list,
                           description="utt channel start dur word confidence")
    lattice: dict[str, Any] | None = Field(default=None, description="Lattice.to_json()")
    rescored: list[RescoredHyp] | None = None
    intent: str | None = Field(default=None, description="with an SLU model (--slu)")


class RescoreHypIn(BaseModel):
    text: str = Field(min_length=1, max_length=2000)
    score: float | None = Field(default=None, allow_inf_nan=False, ge=-1e9, le=1e9,
                                description="first-pass score, natural log (method lm: 0 "
                                "when absent; other methods: give all or none, none = the "
                                "list order is the first pass's ranking)")


class RescoreRequest(BaseModel):
    hyps: list[RescoreHypIn] = Field(min_length=1, max_length=100)
    method: Literal[SECOND_PASS_METHODS] = Field(  # type: ignore[valid-type]
        default="lm", description="second-pass method (speechlm rescore --method)")
    model: str | None = Field(default=None, min_length=1, max_length=500,
                              description="mwer/pll: a scorer dir the server was started "
                              "with (--scorer DIR), by path or dir name")
    prefix: str | None = Field(default=None, min_length=1, max_length=2000,
                               description="method lm only: text the hypotheses continue")
    llm_scale: float | None = Field(default=None, allow_inf_nan=False, ge=0, le=1000)
    threshold: float | None = Field(default=None, allow_inf_nan=False, ge=-1, le=100,
                                    description="ger-free only: the guard (default 0.3)")


class Correction(BaseModel):
    text: str | None = Field(description="the generated transcript (null: failed)")
    kept: bool = Field(description="within the guard threshold of the N-best")
    reason: str = Field(description="why it was not kept (drift, empty, error, context)")


class RescoreResponse(BaseModel):
    hyps: list[RescoredHyp]
    llm: str = Field(description="the LLM, or the scorer dir (mwer/pll)")
    llm_scale: float
    method: str = "lm"
    text: str = Field(default="", description="the chosen transcript")
    correction: Correction | None = None
    notes: list[str] = Field(default_factory=list,
                             description="dropped duplicates, scoring failures")
    figures: dict[str, Any] = Field(default_factory=dict,
                                    description="tokens/s, latency, attention backend")


class ModelInfo(BaseModel):
    name: str
    loaded: bool
    lattice: bool | None = None


class Health(BaseModel):
    status: str
    models: list[ModelInfo]
    llm: str | None
    queue_depth: int
    uptime_s: float


def _error(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers=headers)


_ERRORS = {
    413: {"model": ErrorResponse, "description": "upload over the size limit"},
    401: {"model": ErrorResponse, "description": "API key missing or wrong (with --api-key)"},
    408: {"model": ErrorResponse, "description": "the body did not arrive in time"},
    422: {"model": ErrorResponse, "description": "bad request or audio (message says why)"},
    429: {"model": ErrorResponse, "description": "queue full; retry later"},
    503: {"model": ErrorResponse, "description": "the server is stopping"},
}


# /v1/audio/transcriptions answers in OpenAI's shapes: errors carry type and param too
_OPENAI_RESPONSES = {
    200: {"description": "json: {text}; text: the text; verbose_json: text, duration, words "
                         "with start/end, segments",
          "content": {"application/json": {"schema": {"type": "object"}},
                      "text/plain": {"schema": {"type": "string"}}}},
    400: {"model": ErrorResponse, "description": "unsupported response_format, or not audio"},
    404: {"model": ErrorResponse, "description": "the model is not served"},
}


class BodyTooLarge(Exception):
    pass


# ---- app -------------------------------------------------------------------------------
def create_app(state: ServeState, *, demo: Any = None, api: bool = True) -> FastAPI:
    """The FastAPI app over ``state``; with ``demo`` (Gradio Blocks) mounted at /demo.

    ``api=False`` leaves out the ``/v1`` routes (``speechlm serve demo``).
    """
    app = FastAPI(title="speechlm", version="0.1.0",
                  description="Speech recognition with lattices and confusion networks, "
                              "and LLM rescoring through speechlm's runtime.")
    app.state.serve = state
    limit = state.config.max_upload_bytes

    @app.middleware("http")
    async def count_and_limit(request: Request, call_next):
        start = time.perf_counter()
        path = request.url.path
        size = request.headers.get("content-length")
        cap = limit if path == "/v1/transcribe" else MAX_JSON_BYTES
        if api and path in ("/v1/transcribe", "/v1/rescore") and request.method == "POST":
            if size is None:  # a chunked body could be any size: refuse before reading
                response = _error(411, "length_required", "send a Content-Length header")
                state.metrics.observe(path, 411, time.perf_counter() - start)
                return response
            if not size.isdigit() or int(size) > cap:
                state.metrics.reject("too_large")
                response = _error(413, "too_large", f"request body over {cap} bytes")
                state.metrics.observe(path, 413, time.perf_counter() - start)
                return response
            try:  # a place in the queue before the body is read: a full server reads nothing
                with state.slot():
                    response = await call_next(request)
            except QueueFull as e:
                response = _error(429, "queue_full", str(e), {"Retry-After": "1"})
            state.metrics.observe(path, response.status_code, time.perf_counter() - start)
            return response
        response = await call_next(request)
        if path in _ENDPOINTS:
            state.metrics.observe(path, response.status_code, time.perf_counter() - start)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        parts = []
        for e in exc.errors()[:5]:
            where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body",))
            parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else e.get("msg", ""))
        return _error(422, "invalid_request", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge):
        state.metrics.reject("too_large")
        return _error(413, "too_large", str(exc))

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception):
        logger.exception("unhandled error on %s", request.url.path)  # server log only
        return _error(500, "internal_error", "internal error (logged on the server)")

    if api:
        _add_api_routes(app, state)
    # outermost: Host, API key and upload checks before anything reads the body
    app.add_middleware(Guard, config=state.config.guard, on_reject=state.metrics.reject)

    @app.get("/healthz", response_model=Health, summary="Liveness and what is loaded")
    async def healthz():
        models = [{"name": n, "loaded": state.is_loaded(n),
                   "lattice": state.asr(n).has_lattice if state.is_loaded(n) else None}
                  for n in state.model_names]
        return {"status": "ok", "models": models, "llm": state.llm_name,
                "queue_depth": state.queue_depth,
                "uptime_s": round(time.time() - state.started, 1)}

    @app.get("/metrics", response_class=PlainTextResponse,
             summary="Prometheus counters: requests, latency, the LLM runtime's")
    async def metrics():
        text = state.metrics.prometheus_text(state.queue_depth, state.worker_pids())
        if state.llm is not None:
            text += state.llm.metrics.prometheus_text()
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    if demo is not None:
        import gradio as gr

        @app.get("/", include_in_schema=False)
        async def root():
            return RedirectResponse("/demo/")

        # the demo's uploads get the API's size limit; no Node SSR server, no MCP endpoint
        app = gr.mount_gradio_app(app, demo, path="/demo",
                                  max_file_size=state.config.max_upload_bytes,
                                  ssr_mode=False, mcp_server=False, show_error=False)
    return app


def _add_api_routes(app: FastAPI, state: ServeState) -> None:
    """POST /v1/transcribe and /v1/rescore."""
    limit = state.config.max_upload_bytes

    @app.post("/v1/transcribe", response_model=TranscribeResponse,
              response_model_exclude_none=False, responses=_ERRORS,
              summary="Transcribe one audio file")
    async def transcribe(
        request: Request,
        file: Annotated[UploadFile, File(description="WAV, FLAC, OGG or MP3; mono unless "
                                                     "mix_channels")],
        model: Annotated[str | None, Form(description="ASR model name (see /healthz)",
                                          max_length=64)] = None,
        nbest: Annotated[int, Form(ge=1, le=state.config.max_nbest)] = 5,
        wcn: Annotated[bool, Form(description="confusion network + CTM")] = True,
        lattice: Annotated[bool, Form(description="the word lattice (JSON)")] = False,
        rescore: Annotated[bool, Form(description="LLM-rescore the N-best")] = False,
        mix_channels: Annotated[bool, Form(description="average stereo to mono")] = False,
        utt: Annotated[str, Form(pattern=UTT_PATTERN)] = "utt",
    ):
        if model is not None and model not in state.model_names:
            return _error(422, "unknown_model", f"model {model!r} is not served; choose "
                          f"from {', '.join(state.model_names)}")
        if rescore and state.llm is None:
            return _error(422, "no_llm", "rescore needs an LLM: start the server with --llm")
        data = await _read_upload(file, limit)
        limits = state.config.limits(mix_channels)

        def after(t):  # LLM work on the server's threads, after the decode
            out = t.to_json(nbest=True, wcn=wcn, lattice=lattice)
            out["nbest"]["hyps"] = out["nbest"]["hyps"][:nbest]
            if rescore and t.nbest:
                texts = [h for h in t.nbest[:nbest] if h.text.strip()]
                out["rescored"] = [rescored_json(r) for r in rescore_nbest(
                    state.llm, texts, llm_scale=state.config.llm_scale)]
            if state.slu is not None:
                out["intent"] = state.slu(t)
            return out

        try:
            t = await _wait(request, state, state.transcribe(model, data, utt=utt, wcn=wcn,
                                                             limits=limits))
            state.metrics.decoded(t.duration, t.decode_s)
            if rescore or state.slu is not None:
                return await asyncio.wrap_future(state.run_in_thread(after, t))
            return after(t)
        except AudioRejected as e:
            return _error(422, e.code, str(e))
        except ValueError as e:  # the decoder or the LLM refused this input
            return _error(422, "undecodable", str(e))
        except (Cancelled, PoolClosed) as e:
            return _error(503, "unavailable", str(e))

    @app.post("/v1/audio/transcriptions", summary="OpenAI-compatible transcription",
              responses={**_ERRORS, **_OPENAI_RESPONSES})
    async def openai_transcriptions(
        request: Request,
        file: Annotated[UploadFile, File(description="WAV, FLAC, OGG or MP3")],
        model: Annotated[str, Form(description="a served model name (see /healthz); "
                                   "'whisper-1' means the default model", max_length=64)],
        response_format: Annotated[str, Form()] = "json",
        language: Annotated[str | None, Form(max_length=16)] = None,
        prompt: Annotated[str | None, Form(max_length=1000)] = None,
        temperature: Annotated[float, Form(ge=0, le=1)] = 0.0,
    ):
        # OpenAI's error shape, so that its clients report our messages
        def refuse(status: int, code: str, message: str, param: str | None = None):
            return JSONResponse({"error": {"message": message, "type": "invalid_request_error",
                                           "param": param, "code": code}}, status_code=status)

        if response_format not in ("json", "text", "verbose_json"):
            return refuse(400, "unsupported_format", f"response_format {response_format!r} "
                          "is not supported; use json, text or verbose_json", "response_format")
        if model != "whisper-1" and model not in state.model_names:
            return refuse(404, "model_not_found", f"model {model!r} is not served; served: "
                          f"{', '.join(state.model_names)} (or whisper-1 for the default)",
                          "model")
        # language/prompt/temperature are accepted for compatibility: our decoders are
        # beam searches (temperature 0) and take no text prompt; the language is the model's
        del language, prompt, temperature
        data = await _read_upload(file, limit)
        try:
            t = await _wait(request, state, state.transcribe(
                None if model == "whisper-1" else model, data, utt="utt", wcn=True,
                limits=state.config.limits(False)))
        except AudioRejected as e:
            return refuse(400, e.code, str(e), "file")
        except ValueError as e:
            return refuse(400, "undecodable", str(e), "file")
        except (Cancelled, PoolClosed) as e:
            return refuse(503, "unavailable", str(e))
        state.metrics.decoded(t.duration, t.decode_s)
        if response_format == "text":
            return PlainTextResponse(t.text + "\n")
        if response_format == "json":
            return {"text": t.text}
        words = [{"word": w, "start": round(a, 3), "end": round(b, 3)}
                 for w, a, b in t.word_times()]
        return {"task": "transcribe", "language": "english", "duration": round(t.duration, 3),
                "text": t.text, "words": words,
                "segments": [{"id": 0, "start": 0.0, "end": round(t.duration, 3),
                              "text": t.text}]}

    scorers = {}  # served scorer dirs by path and by dir name
    for d in state.config.scorers:
        scorers[d] = scorers[Path(d).name] = d
    cache: dict = {}  # loaded scorers and task-activating turns, kept between requests
    cache_lock = threading.Lock()

    @app.post("/v1/rescore", response_model=RescoreResponse, responses=_ERRORS,
              summary="Re-rank an N-best list with a second-pass method")
    async def rescore(body: RescoreRequest):
        method = body.method
        scale = state.config.llm_scale if body.llm_scale is None else body.llm_scale
        if body.model is not None and method not in TRAINED_METHODS:
            return _error(422, "invalid_request", f"model is for the trained methods "
                          f"({', '.join(TRAINED_METHODS)}), not {method}")
        if body.prefix is not None and method != "lm":
            return _error(422, "invalid_request", f"prefix is for method lm only, not {method}")
        if body.threshold is not None and method != "ger-free":
            return _error(422, "invalid_request", "threshold is for method ger-free only")
        if method in TRAINED_METHODS:
            served = ", ".join(state.config.scorers) or "none (start the server with --scorer DIR)"
            if body.model is None:
                return _error(422, "no_model", f"method {method} needs model: a scorer dir "
                              f"from 'speechlm rescore train --method {method}'; served: "
                              f"{served}")
            if body.model not in scorers:
                return _error(422, "unknown_model", f"scorer {body.model!r} is not served; "
                              f"served: {served}")
        elif state.llm is None:
            return _error(422, "no_llm", "no LLM is loaded: start the server with --llm DIR")

        def work_lm():
            ranked = rescore_nbest(state.llm, [(h.text, h.score or 0.0) for h in body.hyps],
                                   prefix=body.prefix, llm_scale=scale)
            return {"hyps": [rescored_json(r) for r in ranked], "llm": state.llm_name or "llm",
                    "llm_scale": scale, "text": ranked[0].text,
                    "figures": state.llm_figures()}

        def work():
            hyps = [h.text if h.score is None else (h.text, h.score) for h in body.hyps]
            with cache_lock:  # one request at a time loads a scorer or the activation turns
                out = rescore_ranked(hyps, method, llm=state.llm,
                                     scorer=scorers.get(body.model or ""), llm_scale=scale,
                                     threshold=0.3 if body.threshold is None else body.threshold,
                                     cache=cache)
            name = body.model if method in TRAINED_METHODS else (state.llm_name or "llm")
            figures = state.llm_figures() if method not in TRAINED_METHODS else {}
            return {**out, "llm": name, "llm_scale": scale, "figures": figures}

        try:
            return await asyncio.wrap_future(state.run_in_thread(
                work_lm if method == "lm" else work))
        except FileNotFoundError as e:  # a served dir that is gone, or of the other method
            return _error(422, "invalid_model", str(e))
        except ValueError as e:  # empty after tokenizing, over the context length
            return _error(422, "invalid_text", str(e))


_ENDPOINTS = {"/v1/transcribe", "/v1/audio/transcriptions", "/v1/rescore", "/healthz",
              "/metrics"}


async def _read_upload(file: UploadFile, limit: int) -> bytes:
    """The upload's bytes, at most ``limit`` (starlette has spooled it already; the
    middleware refused larger declared bodies)."""
    chunks, size = [], 0
    while chunk := await file.read(1 << 16):
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"upload over {limit} bytes")
        chunks.append(chunk)
    await file.close()
    return b"".join(chunks)


async def _wait(request: Request, state: ServeState, future):
    """The decode's result; cancels it when the client disconnects or the handler is
    cancelled, so nobody's abandoned request keeps a worker busy."""
    wrapped = asyncio.wrap_future(future)
    wrapped.add_done_callback(lambda f: f.cancelled() or f.exception())  # seen, if unused
    # the body has been read: what the server receives next is the client's disconnect
    gone = asyncio.ensure_future(request.receive())
    try:
        await asyncio.wait({wrapped, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not wrapped.done() and gone.result().get("type") != "http.disconnect":
            await asyncio.wait({wrapped})  # not a disconnect after all: just wait
        if wrapped.done():
            if future.cancelled():  # dropped from the queue: the server is stopping
                raise Cancelled("the server is stopping")
            return wrapped.result()
        state.metrics.reject("client_gone")
        state.cancel(future)
        raise Cancelled("the client went away")
    except asyncio.CancelledError:
        state.cancel(future)
        raise
    finally:
        gone.cancel()
