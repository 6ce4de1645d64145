"""Decoding in worker processes: the server answers while decoders work, cancels abandoned
work, and stops within its drain bound (issue 22: one decode used to freeze it)."""
from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from serve_helpers import wav_bytes

pytest.importorskip("pocketsphinx")


def noise(seconds: float, sample_rate: int = 16000) -> np.ndarray:
    """White noise: PocketSphinx searches hard on it (~0.5 s of CPU per second of audio)."""
    rng = np.random.default_rng(0)
    return (0.3 * rng.standard_normal(int(seconds * sample_rate))).astype(np.float32)


@pytest.fixture(scope="module")
def pool(cards):
    from speechlm.serve.workers import WorkerPool

    p = WorkerPool({"pocketsphinx": ("pocketsphinx", None)}, nbest=5, processes=1)
    p.start()
    yield p
    p.close(1)


def test_a_worker_decodes_what_the_api_decodes(pool, ps_asr, cards):
    from speechlm.api import AudioRejected

    t = pool.submit("pocketsphinx", (cards / "001.wav").read_bytes(), utt="001").result(60)
    here = ps_asr(cards / "001.wav", utt="001")
    assert (t.text, t.utt, [h.text for h in t.nbest]) == (here.text, "001",
                                                          [h.text for h in here.nbest])
    assert t.wcn is not None and t.lattice is not None
    with pytest.raises(AudioRejected) as e:
        pool.submit("pocketsphinx", b"RIFF not really audio").result(60)
    assert e.value.code == "not_audio"
    assert pool.info["pocketsphinx"].has_lattice


def test_cancel_drops_a_queued_job_and_stops_a_running_one(pool, cards):
    from speechlm.serve.workers import Cancelled

    running = pool.submit("pocketsphinx", noise(20), sample_rate=16000)
    queued = pool.submit("pocketsphinx", noise(20), sample_rate=16000)
    deadline = time.monotonic() + 30
    while not running.running() and time.monotonic() < deadline:
        time.sleep(0.01)
    pool.cancel(queued)
    assert queued.cancelled() and pool.queued() == 0
    pool.cancel(running)  # its worker is killed (the decoder is native code) and restarted
    with pytest.raises(Cancelled):
        running.result(30)
    t = pool.submit("pocketsphinx", (cards / "003.wav").read_bytes()).result(60)
    assert t.text == "seven of clubs"


def test_a_model_that_does_not_load_stops_the_start():
    from speechlm.serve.workers import WorkerPool

    p = WorkerPool({"x": ("/no/such/model/dir", None)}, nbest=1, processes=1)
    with pytest.raises(ValueError, match="could not load the models.*no/such"):
        p.start()


# ---- a real server: health checks during a long decode, 429s, disconnects, SIGTERM -----
def _request(port: int, method: str, path: str, body: bytes = b"",
             headers: dict | None = None, timeout: float = 60) -> tuple[int, bytes, float]:
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read(), time.perf_counter() - start
    finally:
        conn.close()


def _multipart(data: bytes) -> tuple[bytes, dict]:
    b = "speechlmworkerstest"
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode() + data + f"\r\n--{b}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={b}"}


def _metric(port: int, name: str) -> float:
    text = _request(port, "GET", "/metrics")[1].decode()
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def _wait_until(check, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_server_answers_during_a_long_decode_and_stops_within_its_drain_bound(cards):
    pytest.importorskip("uvicorn")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "speechlm.bin.serve", "api", "--port", "0", "--llm", "none",
         "--max-seconds", "60", "--max-concurrency", "1", "--max-waiting", "1",
         "--drain-seconds", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        port = None
        deadline = time.monotonic() + 120
        while port is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            m = re.search(r"speechlm serve: http://127\.0\.0\.1:(\d+)", line)
            port = int(m.group(1)) if m else None
        assert port, "server did not start"
        threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()

        body, headers = _multipart(wav_bytes(noise(40), 16000))
        long_result: dict = {}

        def long_request():
            try:
                long_result["status"] = _request(port, "POST", "/v1/transcribe", body,
                                                 headers)[0]
            except (OSError, http.client.HTTPException) as e:
                long_result["error"] = e

        first = threading.Thread(target=long_request)
        first.start()
        assert _wait_until(lambda: _metric(port, "speechlm_serve_queue_depth") == 1)
        # a second request waits in the queue; its client gives up: its work is dropped
        waiting = socket.create_connection(("127.0.0.1", port))
        waiting.sendall(f"POST /v1/transcribe HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        f"Content-Type: {headers['Content-Type']}\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        assert _wait_until(lambda: _metric(port, "speechlm_serve_queue_depth") == 2)
        # the queue is full: the next request gets 429 at once, before its body is read
        status, answer, seconds = _request(port, "POST", "/v1/transcribe", body, headers)
        assert status == 429 and json.loads(answer)["error"]["code"] == "queue_full"
        assert seconds < 1.0
        # health and metrics answer while the decoder works (they used to wait for it)
        slowest = 0.0
        for _ in range(10):
            status, answer, seconds = _request(port, "GET", "/healthz", timeout=10)
            assert status == 200 and json.loads(answer)["queue_depth"] >= 1
            slowest = max(slowest, seconds)
            time.sleep(0.1)
        assert slowest < 1.0, f"/healthz took {slowest:.2f} s during a decode"
        waiting.close()
        assert _wait_until(lambda: _metric(port, "speechlm_serve_queue_depth") == 1)
        assert _metric(port, 'speechlm_serve_rejected_total{reason="client_gone"}') == 1
        assert first.is_alive(), "the long decode finished too soon for this test"
        # SIGTERM during the decode: out within drain (1 s) + a few seconds of stopping
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        stopped_in = time.monotonic() - start
        first.join(30)
        assert stopped_in < 10, f"SIGTERM took {stopped_in:.1f} s"
        assert long_result.get("status") in (503, None)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_queued_requests_are_decoded_as_one_batch(cards, ps_asr):
    """max_batch 4: requests queued behind a running one go to the worker together, each
    gets its own result (a rejected one does not fail its neighbours)."""
    from speechlm.api import AudioRejected
    from speechlm.serve.workers import WorkerPool

    pool = WorkerPool({"pocketsphinx": ("pocketsphinx", None)}, nbest=5, processes=1,
                      max_batch=4)
    pool.start()
    try:
        busy = pool.submit("pocketsphinx", noise(6), sample_rate=16000)
        deadline = time.monotonic() + 30
        while not busy.running() and time.monotonic() < deadline:
            time.sleep(0.01)
        names = ["001", "002", "bad", "003", "004"]
        futures = [pool.submit("pocketsphinx", b"RIFF junk" if n == "bad" else
                               (cards / f"{n}.wav").read_bytes(), utt=n) for n in names]
        busy.result(120)
        for n, f in zip(names, futures, strict=True):
            if n == "bad":
                with pytest.raises(AudioRejected):
                    f.result(120)
                continue
            t = f.result(120)
            here = ps_asr(cards / f"{n}.wav", utt=n)
            assert (t.utt, t.text, [h.text for h in t.nbest]) == \
                (n, here.text, [h.text for h in here.nbest])
        assert pool.batch_sizes[4] == 1 and pool.batch_sizes[1] == 2, pool.batch_sizes
    finally:
        pool.close(1)
