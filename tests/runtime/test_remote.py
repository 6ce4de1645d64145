"""RemoteLLM alone: errors, retries and configuration, against stdlib stand-in servers.

The round trip against our own server (every call equal to the local ``LLM``) is in
``tests/serve/test_openai_server.py``: the server lives on the serve floor.
"""
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from speechlm.runtime.remote import RemoteConfig, RemoteError, RemoteLLM


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_is_clear():
    remote = RemoteLLM(f"http://127.0.0.1:{free_port()}/v1", "m", max_retries=1, backoff_s=0)
    with pytest.raises(RemoteError, match="cannot connect to .*is the server running"):
        remote.score(["one"])


def test_5xx_is_retried_then_reported():
    calls = []

    class Busy(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            calls.append(1)
            data = json.dumps({"error": {"message": "engine overloaded"}}).encode()
            self.send_response(503)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        remote = RemoteLLM(f"http://127.0.0.1:{httpd.server_address[1]}/v1", "m",
                           max_retries=2, backoff_s=0)
        with pytest.raises(RemoteError, match="HTTP 503: engine overloaded"):
            remote.generate("one")
        assert len(calls) == 3
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_config_from_env(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="OPENAI_BASE_URL"):
        RemoteConfig()
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8000")
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    config = RemoteConfig()
    assert (config.base_url, config.api_key) == ("http://127.0.0.1:8000/v1", "k")
    with pytest.raises(ValueError, match="http"):
        RemoteConfig(base_url="127.0.0.1:8000")
