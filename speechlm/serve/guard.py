"""What every request passes before the app sees it: Host allow-list, API key, upload
limits, a deadline on reading the body.

An ASGI middleware rather than a FastAPI one, because it has to act before a body is read
(a 429 or 401 costs the server nothing) and to bound how long reading it may take (a
client trickling a 10 MB body would otherwise hold a place for as long as it likes).

- Host: a browser page from any web site can make requests to ``127.0.0.1`` by resolving
  its own domain name there (DNS rebinding); it cannot forge the ``Host`` header, so a
  server that answers only to its own names is out of reach of such pages.
- API key: with one set, ``/v1/*`` needs ``Authorization: Bearer <key>`` or
  ``X-API-Key: <key>`` (compared in constant time); health, metrics and the docs stay open.
- Uploads to the demo (Gradio's ``.../upload``, written to disk by Gradio) are limited in
  number in flight, answered 429 before their bodies are read.
"""
from __future__ import annotations

import asyncio
import hmac
import json

from speechlm.serve.state import GuardConfig


def host_name(header: str) -> str:
    """``"Example.com:7860"`` -> ``"example.com"``, ``"[::1]:80"`` -> ``"::1"``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class BodyTimeout(Exception):
    """The request body did not arrive in time. Body parsers wrap what their ``receive``
    raises (starlette's multipart parser makes it a 400), so the guard also replaces
    whatever response the app then starts with its own 408."""


class Guard:
    """ASGI middleware applying a :class:`GuardConfig` (see the module docstring)."""

    def __init__(self, app, config: GuardConfig, on_reject=None) -> None:
        self.app = app
        self.config = config
        self.on_reject = on_reject  # called with a reason, for the metrics
        self.uploads = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        c = self.config
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        path, method = scope.get("path", ""), scope.get("method", "GET")
        if c.allowed_hosts is not None and host_name(headers.get("host", "")) \
                not in c.allowed_hosts:
            await self._reject(send, 421, "bad_host", "this server does not answer to that "
                               "Host name (see --allowed-hosts)")
            return
        if c.api_key is not None and path.startswith("/v1/") and not self._key_ok(headers):
            await self._reject(send, 401, "unauthorized", "send the API key as "
                               "'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                               {"www-authenticate": "Bearer"})
            return
        upload = method == "POST" and path.startswith("/demo/") and path.endswith("/upload")
        if upload and self.uploads >= c.max_uploads:
            await self._reject(send, 429, "too_many_uploads", f"{c.max_uploads} uploads are "
                               "in progress; retry later", {"retry-after": "1"})
            return
        self.uploads += upload
        late = {"timed_out": False, "answered": False}

        async def guarded_send(message):
            if not late["timed_out"]:
                await send(message)
            elif not late["answered"]:  # the app's answer to a body it never got: ours
                late["answered"] = True
                await self._reject(send, 408, "body_timeout", f"the request body did not "
                                   f"arrive within {c.body_timeout_s:g} s")

        try:
            await self.app(scope, self._timed(receive, late), guarded_send)
        except BodyTimeout:
            if not late["answered"]:
                late["answered"] = True
                await self._reject(send, 408, "body_timeout", f"the request body did not "
                                   f"arrive within {c.body_timeout_s:g} s")
        finally:
            self.uploads -= upload

    def _key_ok(self, headers: dict[str, str]) -> bool:
        given = headers.get("x-api-key", "")
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        return hmac.compare_digest(given.encode(), self.config.api_key.encode())

    def _timed(self, receive, late: dict):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.body_timeout_s
        body_done = False

        async def timed_receive():
            nonlocal body_done
            if body_done:  # after the body, receive waits for a disconnect: no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
            except TimeoutError:
                late["timed_out"] = True
                raise BodyTimeout from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        return timed_receive

    async def _reject(self, send, status: int, code: str, message: str,
                      headers: dict[str, str] | None = None) -> None:
        if self.on_reject is not None:
            self.on_reject(code)
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
        raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        try:
            await send({"type": "http.response.start", "status": status, "headers": raw})
            await send({"type": "http.response.body", "body": body})
        except (OSError, RuntimeError):  # the response had started, or the client is gone
            pass
