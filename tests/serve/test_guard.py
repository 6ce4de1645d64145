"""Request checks before any body is read: Host allow-list (DNS rebinding), API key, a
deadline on the body, demo uploads in flight (issue 22, item 3)."""
from __future__ import annotations

import contextlib
import json
import socket
import threading
import time

import pytest
from serve_helpers import tone, wav_bytes

pytest.importorskip("fastapi")
pytest.importorskip("multipart")

KEY = "k" * 24


def make_app(**guard):
    from speechlm.serve.app import create_app
    from speechlm.serve.state import GuardConfig, ServeConfig, ServeState

    state = ServeState(ServeConfig(decode_processes=False, guard=GuardConfig(**guard)))
    return create_app(state), state


def test_a_rebinding_host_is_refused():
    from fastapi.testclient import TestClient

    app, state = make_app(allowed_hosts=("localhost", "127.0.0.1", "::1"))
    with TestClient(app) as c:
        for host in ("evil.example", "evil.example:7860", "127.0.0.1.evil.example"):
            r = c.get("/healthz", headers={"Host": host})
            assert r.status_code == 421 and r.json()["error"]["code"] == "bad_host", host
        for host in ("localhost:7860", "127.0.0.1", "[::1]:80"):
            assert c.get("/healthz", headers={"Host": host}).status_code == 200, host
        metrics = c.get("/metrics", headers={"Host": "localhost"}).text
        assert 'speechlm_serve_rejected_total{reason="bad_host"} 3' in metrics
    state.close()


def test_the_api_key_guards_v1_only():
    from fastapi.testclient import TestClient

    app, state = make_app(api_key=KEY)
    with TestClient(app) as c:
        body = {"hyps": [{"text": "one"}]}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": KEY[:-1]}):
            r = c.post("/v1/rescore", json=body, headers=headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        # with the key the request reaches the app (which has no LLM here)
        for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}):
            r = c.post("/v1/rescore", json=body, headers=headers)
            assert r.status_code == 422 and r.json()["error"]["code"] == "no_llm"
        assert c.get("/healthz").status_code == 200
        assert KEY not in repr(state.config)
    state.close()
    with pytest.raises(ValueError, match="16 characters"):
        make_app(api_key="short")


@contextlib.contextmanager
def serving(app):
    """``app`` under uvicorn on a free loopback port, in a thread; yields the port."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _send_part(port: int, path: str, body: bytes, declared: int) -> socket.socket:
    """Open a POST declaring ``declared`` body bytes and send only ``body``."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data;"
              f" boundary=xx\r\nContent-Length: {declared}\r\n\r\n".encode() + body)
    return s


def _answer(s: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.mark.slow
def test_a_held_open_upload_gets_408_after_the_body_timeout():
    pytest.importorskip("uvicorn")
    app, state = make_app(body_timeout_s=1.0)
    with serving(app) as port:
        start = time.monotonic()
        s = _send_part(port, "/v1/transcribe", b"--xx\r\n", declared=9_500_000)
        status, body = _answer(s)
        s.close()
        assert status == 408 and body["error"]["code"] == "body_timeout"
        assert time.monotonic() - start < 15  # the deadline is 1 s; generous for a busy CPU
        assert state.queue_depth == 0  # its place in the queue is free again
    state.close()


@pytest.mark.slow
def test_demo_uploads_in_flight_are_limited_before_their_bodies_are_read():
    pytest.importorskip("uvicorn")
    from speechlm.serve.guard import Guard
    from speechlm.serve.state import GuardConfig

    async def reader(scope, receive, send):  # reads the whole body, as an upload route does
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    rejected = []
    app = Guard(reader, GuardConfig(body_timeout_s=20, max_uploads=1), rejected.append)
    with serving(app) as port:
        held = _send_part(port, "/demo/gradio_api/upload", b"x", declared=1_000_000)
        deadline = time.monotonic() + 10
        while app.uploads < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        second = _send_part(port, "/demo/gradio_api/upload", wav_bytes(tone(), 16000),
                            declared=1_000_000)
        status, body = _answer(second)
        assert status == 429 and body["error"]["code"] == "too_many_uploads"
        assert rejected == ["too_many_uploads"]
        held.close()
        second.close()
