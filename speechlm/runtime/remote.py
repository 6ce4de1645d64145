"""``RemoteLLM``: the ``LanguageModel`` interface over an OpenAI-compatible HTTP server.

Works with vLLM, our own ``speechlm.serve.openai_server``, and (for ``generate`` and
``chat``) llama.cpp's server and TGI's Messages API:

* ``score`` -> ``POST /completions`` with ``echo=true, logprobs=1, max_tokens=0`` (or 1 if
  the server refuses 0; the generated token is ignored). Servers that return no prompt
  log-probs (llama.cpp, TGI) cannot score; that is a clear ``RemoteError``.
* ``generate`` -> ``POST /completions`` (``stream=true`` when ``on_token`` is given, read
  as server-sent events), asking for ``logprobs=1`` and vLLM's
  ``return_tokens_as_token_ids`` so the completion's token ids and log-prob come back.
* ``chat`` -> ``POST /chat/completions`` (the server applies the chat template).

Tokenization differs from the local ``LLM`` in one place: the server tokenizes
``prefix + text`` as one string, while ``LLM.score`` tokenizes the prefix and the text
separately. The scored tokens are those whose ``text_offset`` lies at or after the end of
the prefix, so the two agree exactly when the prefix/text boundary is also a token
boundary of the whole string (a word-level tokenizer, or a text starting with a space
for BPE tokenizers with a space prefix, like GPT-2's or Llama's). A token that straddles
the boundary counts as prefix and is not scored; a warning says so.
``text_offset`` conventions differ (vLLM counts the BOS string's characters); the offset
of the prompt's end is calibrated from the last prompt token, which handles both.

Connection: ``base_url`` or ``$OPENAI_BASE_URL`` (``http://host:port/v1``; a URL with no
path gets ``/v1``), ``api_key`` or ``$OPENAI_API_KEY`` (sent as a Bearer token),
``model`` or the server's only model. Connection failures, timeouts, 429 and 5xx are
retried ``max_retries`` times with backoff; then, like any other HTTP error, they raise
``RemoteError`` carrying the server's own message.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from speechlm.runtime.base import (
    Completion,
    LanguageModel,
    OnToken,
    SamplingParams,
    ScoreResult,
)
from speechlm.runtime.metrics import CallRecord, RuntimeMetrics

logger = logging.getLogger(__name__)

RETRY_STATUS = (429, 500, 502, 503, 504)


class RemoteError(OSError):
    """The server could not be reached, or it answered with an error.

    Attributes:
        status: the HTTP status, or None when no answer came (refused, timed out).
        server_message: the server's own error message, when it sent one.
    """

    def __init__(
        self, message: str, status: int | None = None, server_message: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.server_message = status, server_message


@dataclass(frozen=True)
class RemoteConfig:
    """Where the server is and how patiently to talk to it.

    Args:
        base_url: API root including ``/v1`` (default ``$OPENAI_BASE_URL``).
        model: model id; None asks ``/models`` and takes the only one.
        api_key: Bearer token (default ``$OPENAI_API_KEY``; none sent if unset).
        timeout_s: seconds per HTTP request (connect and each read).
        max_retries: extra tries after a connection failure, timeout, 429 or 5xx.
        backoff_s: wait before the first retry; doubles each time.
        eos_token: the EOS token's text (e.g. ``"</s>"``), needed for
            ``score(append_eos=True)``: it is appended to the prompt and scored.
        eos_token_id: the EOS id; lets ``chat`` drop EOS from ``token_ids`` (``generate``
            finds it from ``text_offset``).
    """

    base_url: str | None = None
    model: str | None = None
    api_key: str | None = None
    timeout_s: float = 60.0
    max_retries: int = 2
    backoff_s: float = 0.5
    eos_token: str | None = None
    eos_token_id: int | None = None

    def __post_init__(self) -> None:
        url = self.base_url or os.environ.get("OPENAI_BASE_URL")
        if not url:
            raise ValueError(
                "base_url: pass it or set OPENAI_BASE_URL (e.g. http://127.0.0.1:8000/v1)"
            )
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an http(s) URL, got {url!r}")
        if parts.path in ("", "/"):
            url = url.rstrip("/") + "/v1"  # the OpenAI convention; easy to forget
        object.__setattr__(self, "base_url", url.rstrip("/"))
        if self.api_key is None and os.environ.get("OPENAI_API_KEY"):
            object.__setattr__(self, "api_key", os.environ["OPENAI_API_KEY"])
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.max_retries < 0 or self.backoff_s < 0:
            raise ValueError("max_retries and backoff_s must be >= 0")


class RemoteLLM(LanguageModel):
    """A ``LanguageModel`` served by an OpenAI-compatible server.

    >>> RemoteLLM("http://127.0.0.1:9/v1", model="m").config.base_url
    'http://127.0.0.1:9/v1'

    Args:
        base_url, model: see ``RemoteConfig`` (also any of its fields as keywords).
        config: a whole ``RemoteConfig`` instead of the keywords.
    """

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        *,
        config: RemoteConfig | None = None,
        **kwargs: Any,
    ) -> None:
        self.config = config or RemoteConfig(base_url=base_url, model=model, **kwargs)
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        self._http = httpx.Client(
            base_url=self.config.base_url, headers=headers, timeout=self.config.timeout_s
        )
        self._model = self.config.model
        self._max_tokens_zero = True  # set False once a server refuses max_tokens=0
        self.metrics = RuntimeMetrics()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteLLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- HTTP -----------------------------------------------------------------------
    @property
    def model(self) -> str:
        """The model id sent with each request (asked from ``/models`` if not given)."""
        if self._model is None:
            data = self._request("GET", "/models")["data"]
            if len(data) != 1:
                names = ", ".join(m.get("id", "?") for m in data)
                raise ValueError(
                    f"{self.config.base_url} serves {len(data)} models ({names}); pass model="
                )
            self._model = data[0]["id"]
        return self._model

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        response = self._send(method, path, body, stream=False)
        try:
            return response.json()
        except ValueError as e:
            raise RemoteError(
                f"{method} {self._url(path)}: answer is not JSON: {response.text[:200]!r}",
                response.status_code,
            ) from e

    def _url(self, path: str) -> str:
        return self.config.base_url + path

    def _send(self, method: str, path: str, body: dict | None, *, stream: bool) -> httpx.Response:
        """One request with retries; the response is read unless ``stream``."""
        url, cfg = self._url(path), self.config
        for attempt in range(cfg.max_retries + 1):
            last = attempt == cfg.max_retries
            try:
                request = self._http.build_request(method, path, json=body)
                response = self._http.send(request, stream=stream)
            except httpx.ConnectError as e:
                if last:
                    raise RemoteError(
                        f"cannot connect to {url}: {e} (is the server running?)"
                    ) from e
            except httpx.TimeoutException as e:
                if last:
                    raise RemoteError(
                        f"{method} {url} timed out after {cfg.timeout_s:g} s ({type(e).__name__})"
                    ) from e
            except httpx.HTTPError as e:
                raise RemoteError(f"{method} {url} failed: {e}") from e
            else:
                if response.status_code < 400:
                    return response
                if stream:
                    response.read()
                if last or response.status_code not in RETRY_STATUS:
                    message = _server_message(response)
                    raise RemoteError(
                        f"{method} {url}: HTTP {response.status_code}: {message}",
                        response.status_code,
                        message,
                    )
            time.sleep(cfg.backoff_s * 2**attempt)
            logger.info("retrying %s %s (%d/%d)", method, url, attempt + 1, cfg.max_retries)
        raise AssertionError("unreachable")

    def _events(self, path: str, body: dict) -> Iterator[dict]:
        """Server-sent events of a streamed request, as JSON objects (``[DONE]`` ends)."""
        response = self._send("POST", path, body, stream=True)
        try:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, comments, "event:" lines
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                event = json.loads(data)
                if "error" in event:
                    message = _error_text(event["error"])
                    raise RemoteError(
                        f"POST {self._url(path)}: error in stream: {message}", None, message
                    )
                yield event
        except httpx.HTTPError as e:
            raise RemoteError(f"POST {self._url(path)}: stream broke: {e}") from e
        finally:
            response.close()

    def _record(self, kind: str, started: float, usage: dict, n: int, generated: bool) -> None:
        # Remote wall time stands in for prefill (score) or decode (generation) time.
        elapsed = time.perf_counter() - started
        self.metrics.record(
            CallRecord(
                kind=kind,
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                generated_tokens=int(usage.get("completion_tokens") or 0) if generated else 0,
                prefill_s=0.0 if generated else elapsed,
                decode_s=elapsed if generated else 0.0,
                num_sequences=n,
                batch_size=n,
            )
        )

    # ---- LanguageModel API ------------------------------------------------------------
    def score(
        self,
        texts: Sequence[str],
        prefix: str | None = None,
        *,
        per_token: bool = False,
        append_eos: bool = False,
        batch_size: int = 16,
    ) -> list[float] | list[ScoreResult]:
        """Log-probability of each text after ``prefix``, from the server's echo log-probs.

        See the module docstring for where the result can differ from ``LLM.score``.

        Raises:
            ValueError: an empty text or prefix, ``append_eos`` without ``eos_token``.
            RemoteError: the server failed or returned no prompt log-probs.
        """
        if isinstance(texts, str):
            raise ValueError("texts must be a sequence of strings, not a str")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if prefix is not None and not prefix:
            raise ValueError("prefix is empty: pass None for no prefix")
        if append_eos and not self.config.eos_token:
            raise ValueError("append_eos needs RemoteLLM(eos_token=...), the EOS token's text")
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"texts[{i}] is empty: nothing to score")
        suffix = self.config.eos_token if append_eos else ""
        prompts = [(prefix or "") + t + suffix for t in texts]
        results: list[ScoreResult] = []
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start : start + batch_size]
            started = time.perf_counter()
            choices, usage = self._echo(batch)
            self._record("score", started, usage, len(batch), generated=False)
            results += [
                self._scored(c, p, len(prefix or "")) for c, p in zip(choices, batch, strict=True)
            ]
        return results if per_token else [r.total for r in results]

    def _echo(self, prompts: list[str]) -> tuple[list[dict], dict]:
        body = {
            "model": self.model,
            "prompt": prompts,
            "echo": True,
            "logprobs": 1,
            "temperature": 0.0,
            "max_tokens": 0 if self._max_tokens_zero else 1,
        }
        try:
            out = self._request("POST", "/completions", body)
        except RemoteError as e:
            if e.status != 400 or not self._max_tokens_zero:
                raise
            self._max_tokens_zero = False  # e.g. "max_tokens must be at least 1"
            logger.info(
                "server refused max_tokens=0 (%s); scoring with max_tokens=1", e.server_message
            )
            out = self._request("POST", "/completions", {**body, "max_tokens": 1})
        choices = sorted(out.get("choices", []), key=lambda c: c.get("index", 0))
        if len(choices) != len(prompts):
            raise RemoteError(
                f"{self._url('/completions')}: {len(choices)} choices for {len(prompts)} prompts"
            )
        return choices, out.get("usage") or {}

    def _scored(self, choice: dict, prompt: str, boundary: int) -> ScoreResult:
        lp = choice.get("logprobs") or {}
        tokens, values, offsets = (
            lp.get("tokens"),
            lp.get("token_logprobs"),
            lp.get("text_offset"),
        )
        if not tokens or values is None or offsets is None:
            raise RemoteError(
                f"{self._url('/completions')} returned no prompt log-probs "
                "(echo + logprobs); this server cannot score"
            )
        n_prompt = len(tokens) - (0 if self._max_tokens_zero else 1)
        # Where the prompt ends in the server's offsets: the BOS string shifts vLLM's.
        shift = offsets[n_prompt - 1] + len(tokens[n_prompt - 1]) - len(prompt)
        first = boundary + shift
        picked = [i for i in range(1, n_prompt) if offsets[i] >= first and values[i] is not None]
        if boundary and not any(offsets[i] == first for i in range(n_prompt)):
            logger.warning(
                "prefix/text boundary at character %d falls inside a token of "
                "%r; that token is counted as prefix",
                boundary,
                prompt[:80],
            )
        return ScoreResult(
            total=float(sum(values[i] for i in picked)),
            tokens=[tokens[i] for i in picked],
            token_logprobs=[float(values[i]) for i in picked],
        )

    def generate(
        self,
        prompts: str | Sequence[str],
        params: SamplingParams | None = None,
        *,
        on_token: OnToken | None = None,
    ) -> list[Completion]:
        """Continue each prompt on the server (one request for all prompts).

        ``token_ids`` come from vLLM's ``return_tokens_as_token_ids``; a server without
        it gives ``token_ids == []`` (the text and log-prob are still right). Streaming
        calls ``on_token(i, token_id, piece)`` per event (``token_id`` -1 if unknown).

        Raises:
            ValueError: beam search (not in the OpenAI API) or an empty prompt.
            RemoteError: the server failed.
        """
        params = params or SamplingParams()
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        for i, p in enumerate(prompts):
            if not isinstance(p, str) or not p:
                raise ValueError(f"prompts[{i}] must be a non-empty str")
        body = {
            "model": self.model,
            "prompt": prompts,
            **_sampling_body(params),
            "logprobs": 1,
            "return_tokens_as_token_ids": True,
        }
        started = time.perf_counter()
        if on_token is None:
            out = self._request("POST", "/completions", body)
            choices = sorted(out.get("choices", []), key=lambda c: c.get("index", 0))
            usage = out.get("usage") or {}
        else:
            choices, usage = self._stream(
                "/completions", {**body, "stream": True}, len(prompts), on_token, chat=False
            )
        if len(choices) != len(prompts):
            raise RemoteError(
                f"{self._url('/completions')}: {len(choices)} choices for {len(prompts)} prompts"
            )
        self._record("generate", started, usage, len(prompts), generated=True)
        return [self._completion(c, params) for c in choices]

    def chat(
        self,
        messages: list[dict[str, str]],
        params: SamplingParams | None = None,
        *,
        on_token: OnToken | None = None,
    ) -> Completion:
        """Answer a chat with the server's chat template (``/chat/completions``)."""
        params = params or SamplingParams()
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise ValueError(f"messages[{i}] needs 'role' and 'content', got {m!r}")
        body = {
            "model": self.model,
            "messages": messages,
            **_sampling_body(params),
            "logprobs": True,
            "top_logprobs": 0,
            "return_tokens_as_token_ids": True,
        }
        started = time.perf_counter()
        if on_token is None:
            out = self._request("POST", "/chat/completions", body)
            choices, usage = out.get("choices") or [], out.get("usage") or {}
        else:
            choices, usage = self._stream(
                "/chat/completions", {**body, "stream": True}, 1, on_token, chat=True
            )
        if not choices:
            raise RemoteError(f"{self._url('/chat/completions')}: answer has no choices")
        self._record("chat", started, usage, 1, generated=True)
        choice = choices[0]
        entries = (choice.get("logprobs") or {}).get("content") or []
        text = (choice.get("message") or {}).get("content") or ""
        tokens = [e.get("token", "") for e in entries]
        values = [e.get("logprob") for e in entries]
        return self._build(text, tokens, values, None, choice, params)

    # ---- parsing ------------------------------------------------------------------------
    def _stream(
        self, path: str, body: dict, n: int, on_token: OnToken, chat: bool
    ) -> tuple[list[dict], dict]:
        """Read a streamed answer into the shape of a non-streamed one, calling ``on_token``."""
        acc = [
            {
                "index": i,
                "text": "",
                "logprobs": {"tokens": [], "token_logprobs": [], "text_offset": []},
                "content": [],
                "finish_reason": None,
            }
            for i in range(n)
        ]
        usage: dict = {}
        for event in self._events(path, body):
            usage = event.get("usage") or usage
            for choice in event.get("choices") or []:
                i = choice.get("index", 0)
                a = acc[i]
                piece = (
                    (choice.get("delta") or {}).get("content") if chat else choice.get("text")
                ) or ""
                lp = choice.get("logprobs") or {}
                if chat:
                    a["content"] += lp.get("content") or []
                    new_tokens = [e.get("token", "") for e in lp.get("content") or []]
                else:
                    # text_offset in events counts from the start of the choice's text.
                    for key in ("tokens", "token_logprobs", "text_offset"):
                        a["logprobs"][key] += lp.get(key) or []
                    new_tokens = lp.get("tokens") or []
                ids = choice.get("token_ids")
                if ids is None and choice.get("finish_reason") is None:
                    ids = [t for t in map(_token_id, new_tokens) if t is not None]
                if piece or ids:
                    on_token(i, ids[-1] if ids else -1, piece)
                a["text"] += piece
                if choice.get("finish_reason") is not None:
                    a["finish_reason"] = choice["finish_reason"]
                    if "stop_reason" in choice:
                        a["stop_reason"] = choice["stop_reason"]
        out = []
        for a in acc:
            if a["finish_reason"] is None:
                raise RemoteError(f"{self._url(path)}: stream ended without finish_reason")
            if chat:
                out.append(
                    {
                        "message": {"content": a["text"]},
                        "logprobs": {"content": a["content"]},
                        **{k: a[k] for k in ("finish_reason", "stop_reason") if k in a},
                    }
                )
            else:
                out.append({k: v for k, v in a.items() if k != "content"})
        return out, usage

    def _completion(self, choice: dict, params: SamplingParams) -> Completion:
        lp = choice.get("logprobs") or {}
        return self._build(
            choice.get("text") or "",
            lp.get("tokens") or [],
            lp.get("token_logprobs") or [],
            lp.get("text_offset"),
            choice,
            params,
        )

    def _build(
        self,
        text: str,
        tokens: list[str],
        values: list,
        offsets: list | None,
        choice: dict,
        params: SamplingParams,
    ) -> Completion:
        finish = choice.get("finish_reason")
        if finish == "length":
            reason = "length"
        elif "stop_reason" in choice:  # vLLM: None = EOS, else the stop string / token
            reason = "eos" if choice["stop_reason"] is None else "stop"
        else:  # plain OpenAI: "stop" covers both; without stop strings it must be EOS
            reason = "stop" if params.stop else "eos"
        ids = [_token_id(t) for t in tokens]
        if reason == "eos" and ids:
            eos_id = self.config.eos_token_id
            at_end = offsets is not None and offsets[-1] >= len(text)
            if (eos_id is not None and ids[-1] == eos_id) or (eos_id is None and at_end):
                ids = ids[:-1]  # EOS: its log-prob counts, its id is not a new token
        token_ids = [] if any(t is None for t in ids) else ids
        logprob = math.fsum(v for v in values if v is not None)
        return Completion(text=text, token_ids=token_ids, logprob=logprob, finish_reason=reason)


def _sampling_body(params: SamplingParams) -> dict:
    if params.num_beams > 1:
        raise ValueError(
            "num_beams > 1: beam search is not part of the OpenAI API; "
            "RemoteLLM supports greedy and sampling only"
        )
    body: dict[str, Any] = {
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
    }
    if params.top_k:
        body["top_k"] = params.top_k  # vLLM / llama.cpp extension
    if params.stop:
        body["stop"] = list(params.stop)
    if params.seed is not None:
        body["seed"] = params.seed
    return body


def _token_id(token: str) -> int | None:
    """vLLM's ``token_id:<id>`` form; None for a plain token string."""
    if token.startswith("token_id:"):
        try:
            return int(token[9:])
        except ValueError:
            return None
    return None


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


def _server_message(response: httpx.Response) -> str:
    """The server's error message: OpenAI's ``{"error": {"message"}}``, TGI's
    ``{"error": "..."}``, FastAPI's ``{"detail"}``, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300].strip() or response.reason_phrase
    if isinstance(body, dict):
        if "error" in body:
            return _error_text(body["error"])
        if "detail" in body:
            return str(body["detail"])
        if "message" in body:
            return str(body["message"])
    return str(body)[:300]
