"""A small OpenAI-compatible HTTP server over a local ``LLM`` (stdlib ``http.server``).

Endpoints: ``GET /v1/models``, ``POST /v1/completions`` (``echo`` + ``logprobs`` for
scoring, ``stream`` as server-sent events), ``POST /v1/chat/completions``, plus
``GET /health`` and ``GET /metrics`` (the runtime's Prometheus text).

It exists so ``RemoteLLM`` can be tested end to end against our own runtime, and so a
checkpoint can be served to tools that speak the OpenAI API. It is not a production
server: one model, at most ``max_concurrency`` requests on the model at a time (the
runtime is not re-entrant), ``max_waiting`` more queued, anything beyond refused with 503.

>>> from speechlm.testing.llm import tiny_config, tiny_tokenizer
>>> from speechlm.runtime.llm import LLM
>>> llm = LLM.from_config(tiny_config("llama"), tiny_tokenizer("llama"))
>>> with OpenAIServer(llm, ServerConfig(model_name="tiny")) as server:
...     server.url.startswith("http://127.0.0.1:")
True

Token strings follow vLLM's extensions where OpenAI has none: ``top_k`` (-1 or 0 = off)
and ``return_tokens_as_token_ids`` (tokens in ``logprobs`` read ``"token_id:<id>"``).
``stop_reason`` is ``None`` when generation ended at EOS, else the stop string (vLLM).
Streamed events carry ``token_ids`` (vLLM's ``return_token_ids``); with ``logprobs`` a
stream sends them all in each choice's last event, not spread over the events as vLLM
does (the runtime's ``on_token`` has no log-probs); clients that concatenate the events'
``logprobs`` lists, as they must for vLLM, read both alike.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import torch

from speechlm.runtime.base import Completion, SamplingParams

logger = logging.getLogger(__name__)

MAX_LOGPROBS = 20  # alternatives per position; OpenAI allows 5, vLLM 20


@dataclass(frozen=True)
class ServerConfig:
    """Where and how the server listens.

    Args:
        host: interface to bind; loopback by default (no authentication is on by default).
        port: TCP port; 0 picks a free one (read it back from ``OpenAIServer.port``).
        model_name: the id clients pass as ``model`` and ``/v1/models`` lists.
        max_concurrency: requests running on the model at once.
        max_waiting: requests queued beyond those; more are refused with 503.
        max_body_bytes: larger request bodies are refused with 413.
        api_key: when set, requests need ``Authorization: Bearer <api_key>`` (else 401).
    """

    host: str = "127.0.0.1"
    port: int = 0
    model_name: str = "speechlm"
    max_concurrency: int = 1
    max_waiting: int = 16
    max_body_bytes: int = 1 << 20
    api_key: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in [0, 65535], got {self.port}")
        if not self.model_name:
            raise ValueError("model_name must not be empty")
        if self.max_concurrency < 1 or self.max_waiting < 0:
            raise ValueError(
                "max_concurrency must be >= 1 and max_waiting >= 0, got "
                f"{self.max_concurrency} and {self.max_waiting}"
            )
        if self.max_body_bytes < 1024:
            raise ValueError(f"max_body_bytes must be >= 1024, got {self.max_body_bytes}")


class ApiError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {"message", "type", "param"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.status,
            }
        }


# ---- request fields -------------------------------------------------------------------
def _field(body: dict, name: str, types: type | tuple, default: Any) -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise ApiError(400, f"{name} must be {types}, got a bool", name)
    if not isinstance(value, types):
        raise ApiError(400, f"{name} has the wrong type: {type(value).__name__}", name)
    return value


def _reject_unsupported(body: dict) -> None:
    """Refuse options we would otherwise silently ignore (their results would be wrong)."""
    if _field(body, "n", int, 1) != 1 or _field(body, "best_of", int, 1) != 1:
        raise ApiError(400, "only n == 1 and best_of == 1 are supported", "n")
    for name in ("presence_penalty", "frequency_penalty"):
        if _field(body, name, (int, float), 0) != 0:
            raise ApiError(400, f"{name} is not supported", name)
    for name in ("logit_bias", "suffix", "tools", "response_format"):
        if body.get(name):
            raise ApiError(400, f"{name} is not supported", name)


def sampling_params(body: dict, max_tokens_default: int) -> SamplingParams:
    """OpenAI request fields -> ``SamplingParams`` (OpenAI's defaults: temperature 1)."""
    stop = body.get("stop") or ()
    if isinstance(stop, str):
        stop = (stop,)
    if not isinstance(stop, (list, tuple)) or not all(isinstance(s, str) and s for s in stop):
        raise ApiError(400, "stop must be a string or a list of non-empty strings", "stop")
    top_k = _field(body, "top_k", int, 0)
    try:
        return SamplingParams(
            max_tokens=_field(body, "max_tokens", int, max_tokens_default),
            temperature=float(_field(body, "temperature", (int, float), 1.0)),
            top_p=float(_field(body, "top_p", (int, float), 1.0)),
            top_k=0 if top_k == -1 else top_k,  # vLLM spells "off" as -1
            stop=tuple(stop),
            seed=_field(body, "seed", int, None),
        )
    except ValueError as e:
        raise ApiError(400, str(e)) from None


# ---- log-probabilities straight from the model ----------------------------------------
@torch.no_grad()
def token_logprobs(
    model: Any, ids: list[int], start: int, top: int
) -> tuple[list[float], list[list[tuple[int, float]]]]:
    """ln p(ids[t] | ids[:t]) for t in [start, len(ids)), with the ``top`` best alternatives.

    One full forward pass: echo needs every prompt position, and ``top_logprobs`` needs
    the whole distribution, which the runtime's scoring path does not return.
    """
    x = torch.tensor([ids], device=model.device)
    logp = model(input_ids=x).logits[0, start - 1 : -1].float().log_softmax(-1)  # (T', V)
    target = torch.tensor(ids[start:], device=logp.device)
    chosen = logp.gather(1, target[:, None])[:, 0].tolist()
    alts: list[list[tuple[int, float]]] = [[] for _ in chosen]
    if top:
        vals, idx = logp.topk(top, dim=-1)
        alts = [
            list(zip(i.tolist(), v.tolist(), strict=True)) for i, v in zip(idx, vals, strict=True)
        ]
    return chosen, alts


class OpenAIServer:
    """Serve one ``LLM`` over the OpenAI HTTP API on a background thread.

    Args:
        llm: a ``speechlm.runtime.llm.LLM`` (its ``model`` and ``tokenizer`` are used for
            echo log-probs; generation goes through ``llm.generate`` / ``llm.chat``).
        config: address, model name and limits.
    """

    def __init__(self, llm: Any, config: ServerConfig | None = None) -> None:
        self.llm, self.config = llm, config or ServerConfig()
        self._model_lock = threading.BoundedSemaphore(self.config.max_concurrency)
        self._count_lock = threading.Lock()
        self._in_flight = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ------------------------------------------------------------------
    def start(self) -> OpenAIServer:
        handler = type("Handler", (_Handler,), {"server_app": self})
        self._httpd = ThreadingHTTPServer((self.config.host, self.config.port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, daemon=True, name=f"openai-server:{self.port}"
        )
        self._thread.start()
        logger.info("serving %s at %s", self.config.model_name, self.url)
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """Base URL in the OpenAI client's convention (ends in ``/v1``)."""
        return f"http://{self.config.host}:{self.port}/v1"

    # ---- admission --------------------------------------------------------------------
    def admit(self) -> None:
        with self._count_lock:
            if self._in_flight >= self.config.max_concurrency + self.config.max_waiting:
                raise ApiError(
                    503, f"server busy: {self._in_flight} requests in flight", kind="server_error"
                )
            self._in_flight += 1

    def release(self) -> None:
        with self._count_lock:
            self._in_flight -= 1

    # ---- endpoints ----------------------------------------------------------------------
    def models(self) -> dict:
        return {
            "object": "list",
            "data": [
                {
                    "id": self.config.model_name,
                    "object": "model",
                    "created": 0,
                    "owned_by": "speechlm",
                    "max_model_len": self.llm.max_length,
                }
            ],
        }

    def check_model(self, body: dict) -> None:
        name = body.get("model", self.config.model_name)
        if name != self.config.model_name:
            raise ApiError(
                404,
                f"The model `{name}` does not exist; this server has `{self.config.model_name}`",
                "model",
                "not_found_error",
            )

    def completions(self, body: dict, emit: Any | None) -> dict | None:
        """``/v1/completions``; with ``emit`` (streaming) returns None after the last event."""
        self.check_model(body)
        _reject_unsupported(body)
        prompts = body.get("prompt")
        if isinstance(prompts, str):
            prompts = [prompts]
        if (
            not isinstance(prompts, list)
            or not prompts
            or not all(isinstance(p, str) for p in prompts)
        ):
            raise ApiError(
                400,
                "prompt must be a string or a non-empty list of strings "
                "(token-id prompts are not supported)",
                "prompt",
            )
        echo = bool(body.get("echo", False))
        top = _field(body, "logprobs", int, None)
        if top is not None and not 0 <= top <= MAX_LOGPROBS:
            raise ApiError(400, f"logprobs must be in [0, {MAX_LOGPROBS}]", "logprobs")
        as_ids = bool(body.get("return_tokens_as_token_ids", False))
        max_tokens = _field(body, "max_tokens", int, 16)
        if max_tokens == 0 and not echo:
            raise ApiError(400, "max_tokens must be >= 1 (0 only with echo)", "max_tokens")
        if emit is not None and (echo or max_tokens == 0):
            raise ApiError(400, "echo is not supported with stream", "echo")
        params = sampling_params({**body, "max_tokens": max(max_tokens, 1)}, 16)
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        tok = self.llm.tokenizer
        prompt_ids = [list(tok(p, add_special_tokens=True)["input_ids"]) for p in prompts]
        for i, ids in enumerate(prompt_ids):
            if len(ids) + (max_tokens > 0) > self.llm.max_length:
                raise ApiError(
                    400,
                    f"prompt[{i}] is {len(ids)} tokens; this model's context "
                    f"length is {self.llm.max_length}",
                    "prompt",
                )
        with self._model_lock:
            if emit is not None:
                return self._stream(prompts, prompt_ids, params, top, as_ids, emit, rid, created)
            try:
                outs = (
                    self.llm.generate(prompts, params)
                    if max_tokens > 0
                    else [Completion("", [], 0.0, "length") for _ in prompts]
                )
            except ValueError as e:
                raise ApiError(400, str(e)) from None
            choices = []
            for i, (prompt, ids, out) in enumerate(zip(prompts, prompt_ids, outs, strict=True)):
                logprobs = None
                if top is not None:
                    logprobs = self._completion_logprobs(prompt, ids, out, top, echo, as_ids)
                choices.append(
                    {
                        "index": i,
                        "text": (prompt if echo else "") + out.text,
                        "logprobs": logprobs,
                        "finish_reason": _finish(out),
                        "stop_reason": self._stop_reason(out, params.stop),
                    }
                )
        n_prompt, n_gen = sum(map(len, prompt_ids)), sum(_n_generated(o) for o in outs)
        return {
            "id": rid,
            "object": "text_completion",
            "created": created,
            "model": self.config.model_name,
            "choices": choices,
            "usage": {
                "prompt_tokens": n_prompt,
                "completion_tokens": n_gen,
                "total_tokens": n_prompt + n_gen,
            },
        }

    def chat(self, body: dict, emit: Any | None) -> dict | None:
        """``/v1/chat/completions`` through the tokenizer's chat template."""
        self.check_model(body)
        _reject_unsupported(body)
        messages = body.get("messages")
        if (
            not isinstance(messages, list)
            or not messages
            or not all(
                isinstance(m, dict)
                and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str)
                for m in messages
            )
        ):
            raise ApiError(
                400,
                "messages must be a non-empty list of {role, content} objects with string content",
                "messages",
            )
        messages = [{"role": m["role"], "content": m["content"]} for m in messages]
        want_lp = bool(body.get("logprobs", False))
        top = _field(body, "top_logprobs", int, 0) if want_lp else None
        if top is not None and not 0 <= top <= MAX_LOGPROBS:
            raise ApiError(400, f"top_logprobs must be in [0, {MAX_LOGPROBS}]", "top_logprobs")
        as_ids = bool(body.get("return_tokens_as_token_ids", False))
        default_max = self.llm.max_length  # OpenAI: no limit but the context
        body = {**body, "max_tokens": body.get("max_completion_tokens", body.get("max_tokens"))}
        params = sampling_params(body, default_max)
        tok = self.llm.tokenizer
        if getattr(tok, "chat_template", None) is None:
            raise ApiError(400, "this model's tokenizer has no chat template; use /v1/completions")
        text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        prompt_ids = list(tok(text, add_special_tokens=False)["input_ids"])  # as LLM.chat
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        with self._model_lock:
            if emit is not None:
                return self._stream(
                    None, [prompt_ids], params, top, as_ids, emit, rid, created, messages=messages
                )
            try:
                out = self.llm.chat(messages, params)
            except ValueError as e:
                raise ApiError(400, str(e)) from None
            logprobs = None
            if top is not None:
                logprobs = {"content": self._chat_logprobs(prompt_ids, out, top, as_ids)}
        n_gen = _n_generated(out)
        return {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": self.config.model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": out.text},
                    "logprobs": logprobs,
                    "finish_reason": _finish(out),
                    "stop_reason": self._stop_reason(out, params.stop),
                }
            ],
            "usage": {
                "prompt_tokens": len(prompt_ids),
                "completion_tokens": n_gen,
                "total_tokens": len(prompt_ids) + n_gen,
            },
        }

    # ---- helpers ------------------------------------------------------------------------
    def _token_str(self, token_id: int, as_ids: bool) -> str:
        if as_ids:
            return f"token_id:{token_id}"
        return self.llm.tokenizer.decode([token_id], skip_special_tokens=False)

    def _generated(self, out: Completion) -> list[int]:
        """The completion's tokens, with EOS appended when generation ended on it (vLLM
        reports EOS's log-prob too, and ``Completion.logprob`` includes it)."""
        eos = self.llm.tokenizer.eos_token_id
        return out.token_ids + ([eos] if out.finish_reason == "eos" and eos is not None else [])

    def _stop_reason(self, out: Completion, stop: tuple[str, ...]) -> str | None:
        """The stop string that ended ``out`` (vLLM's ``stop_reason``); None otherwise."""
        if out.finish_reason != "stop":
            return None
        full = self.llm.tokenizer.decode(out.token_ids, skip_special_tokens=True)
        return next((s for s in stop if full.startswith(s, len(out.text))), stop[0])

    def _completion_logprobs(
        self, prompt: str, ids: list[int], out: Completion, top: int, echo: bool, as_ids: bool
    ) -> dict:
        """OpenAI's legacy ``logprobs``: tokens, token_logprobs, top_logprobs, text_offset.

        ``text_offset`` is each token's character offset in the returned text: prompt
        tokens from the tokenizer's offset mapping (an added BOS sits at 0), generated
        tokens from the decoded length before them (EOS at the end of the text).
        """
        tok = self.llm.tokenizer
        gen = self._generated(out)
        all_ids = ids + gen
        tokens, lps, tops, offsets = [], [], [], []
        start = 1 if echo else len(ids)
        lp, alts = (
            token_logprobs(self.llm.model, all_ids, start, top)
            if len(all_ids) > start
            else ([], [])
        )
        if echo:
            spans = tok(prompt, add_special_tokens=True, return_offsets_mapping=True)[
                "offset_mapping"
            ]
            for t, (tid, (s, e)) in enumerate(zip(ids, spans, strict=True)):
                tokens.append(prompt[s:e] if e > s and not as_ids else self._token_str(tid, as_ids))
                offsets.append(s)
                lps.append(None if t == 0 else lp[t - 1])
                tops.append(None if t == 0 or not top else self._top_dict(alts[t - 1], as_ids))
            lp, alts = lp[len(ids) - 1 :], alts[len(ids) - 1 :]
        base = len(prompt) if echo else 0
        for k, tid in enumerate(gen):
            tokens.append(self._token_str(tid, as_ids))
            done = len(tok.decode(gen[:k], skip_special_tokens=True)) if k else 0
            offsets.append(base + min(len(out.text), done))
            lps.append(lp[k])
            tops.append(self._top_dict(alts[k], as_ids) if top else None)
        return {
            "tokens": tokens,
            "token_logprobs": lps,
            "top_logprobs": tops,
            "text_offset": offsets,
        }

    def _chat_logprobs(
        self, prompt_ids: list[int], out: Completion, top: int, as_ids: bool
    ) -> list[dict]:
        gen = self._generated(out)
        if not gen:
            return []
        lp, alts = token_logprobs(self.llm.model, prompt_ids + gen, len(prompt_ids), top)
        entries = []
        for k, tid in enumerate(gen):
            s = self._token_str(tid, as_ids)
            entries.append(
                {
                    "token": s,
                    "logprob": lp[k],
                    "bytes": list(s.encode("utf-8")),
                    "top_logprobs": [
                        {"token": self._token_str(i, as_ids), "logprob": v} for i, v in alts[k]
                    ],
                }
            )
        return entries

    def _top_dict(self, alts: list[tuple[int, float]], as_ids: bool) -> dict[str, float]:
        return {self._token_str(i, as_ids): v for i, v in alts}

    def _stream(
        self,
        prompts: list[str] | None,
        prompt_ids: list[list[int]],
        params: SamplingParams,
        top: int | None,
        as_ids: bool,
        emit: Any,
        rid: str,
        created: int,
        messages: list[dict] | None = None,
    ) -> None:
        """Generate with ``on_token``; one server-sent event per streamed piece.

        Each piece's event carries ``token_ids`` (vLLM's ``return_token_ids`` shape) as
        the runtime reports it. Log-probs, when asked for, come in each choice's last
        event (the one with ``finish_reason``), computed after generation: the runtime's
        ``on_token`` gives ids, not log-probs. A client that concatenates the
        ``logprobs`` lists of all events (as OpenAI's own streams need) reads them alike.
        """
        chat = messages is not None
        obj = "chat.completion.chunk" if chat else "text_completion"

        def event(
            i: int,
            piece: str,
            token_ids: list[int] | None,
            finish: str | None,
            logprobs: Any = None,
            stop_reason: str | None = None,
        ) -> dict:
            choice: dict[str, Any] = {"index": i, "logprobs": logprobs, "finish_reason": finish}
            if chat:
                choice["delta"] = {"content": piece} if piece else {}
            else:
                choice["text"] = piece
            if token_ids is not None:
                choice["token_ids"] = token_ids
            if finish is not None:
                choice["stop_reason"] = stop_reason
            return {
                "id": rid,
                "object": obj,
                "created": created,
                "model": self.config.model_name,
                "choices": [choice],
            }

        def on_token(i: int, token_id: int, piece: str) -> None:
            emit(event(i, piece, [token_id], None))

        if chat:
            first = event(0, "", None, None)
            first["choices"][0]["delta"] = {"role": "assistant", "content": ""}
            emit(first)
            outs = [self.llm.chat(messages, params, on_token=on_token)]
        else:
            outs = self.llm.generate(prompts, params, on_token=on_token)
        for i, out in enumerate(outs):
            logprobs = None
            if top is not None and chat:
                logprobs = {"content": self._chat_logprobs(prompt_ids[i], out, top, as_ids)}
            elif top is not None:
                logprobs = self._completion_logprobs(
                    prompts[i], prompt_ids[i], out, top, False, as_ids
                )
            emit(event(i, "", None, _finish(out), logprobs, self._stop_reason(out, params.stop)))


def _finish(out: Completion) -> str:
    """OpenAI has no "eos": both EOS and a stop string are "stop" (``stop_reason`` tells)."""
    return "length" if out.finish_reason == "length" else "stop"


def _n_generated(out: Completion) -> int:
    return len(out.token_ids) + (out.finish_reason == "eos")


class _Handler(BaseHTTPRequestHandler):
    """HTTP plumbing: JSON in, JSON or server-sent events out, errors in OpenAI's shape."""

    server_app: OpenAIServer  # set on the subclass made by OpenAIServer.start
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:  # route to logging, not stderr
        logger.debug("%s " + fmt, self.address_string(), *args)

    def _send_json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_text(self, status: int, text: str, content_type: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        key = self.server_app.config.api_key
        return key is None or self.headers.get("Authorization", "") == f"Bearer {key}"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        app = self.server_app
        try:
            if not self._authorized():
                raise ApiError(401, "invalid or missing API key", kind="authentication_error")
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == "/v1/models":
                self._send_json(200, app.models())
            elif path == "/health":
                self._send_text(200, "ok\n", "text/plain")
            elif path == "/metrics":
                self._send_text(200, app.llm.metrics.prometheus_text(), "text/plain; version=0.0.4")
            else:
                raise ApiError(404, f"no such endpoint: GET {path}", kind="not_found_error")
        except ApiError as e:
            self._send_json(e.status, e.body())

    def do_POST(self) -> None:  # noqa: N802
        app = self.server_app
        path = self.path.split("?", 1)[0].rstrip("/")
        streaming = False
        try:
            if not self._authorized():
                raise ApiError(401, "invalid or missing API key", kind="authentication_error")
            endpoint = {"/v1/completions": app.completions, "/v1/chat/completions": app.chat}.get(
                path
            )
            if endpoint is None:
                raise ApiError(404, f"no such endpoint: POST {path}", kind="not_found_error")
            body = self._read_body()
            streaming = bool(body.get("stream", False))
            app.admit()
            try:
                if streaming:
                    endpoint(body, self._emit)  # the stream starts with the first event
                    self._emit(None)
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                else:
                    self._send_json(200, endpoint(body, None))
            finally:
                app.release()
        except ApiError as e:
            if streaming and self._stream_started:
                self._emit(e.body())  # headers are gone: report in-band, as vLLM does
            else:
                self._send_json(e.status, e.body())
        except (BrokenPipeError, ConnectionResetError):
            logger.info("client went away during %s", path)
        except Exception as e:  # a bug or a runtime failure: say so, keep serving
            logger.exception("error serving %s", path)
            err = ApiError(500, f"{type(e).__name__}: {e}", kind="server_error")
            if streaming and self._stream_started:
                self._emit(err.body())
            else:
                self._send_json(500, err.body())

    _stream_started = False

    def _read_body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.server_app.config.max_body_bytes:
            raise ApiError(
                413,
                f"request body of {length} bytes is over the limit of "
                f"{self.server_app.config.max_body_bytes}",
            )
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError as e:
            raise ApiError(400, f"request body is not JSON: {e}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "request body must be a JSON object")
        return body

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        # No Content-Length: the body ends when the connection closes.
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self._stream_started = True

    def _emit(self, obj: dict | None) -> None:
        if not self._stream_started:
            self._start_stream()
        if obj is None:
            return
        self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
        self.wfile.flush()
