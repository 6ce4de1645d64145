"""The HTTP API: endpoints in-process (TestClient), then a real server on a loopback port."""
from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from serve_helpers import tone, wav_bytes

pytest.importorskip("fastapi")
pytest.importorskip("multipart")  # python-multipart: FastAPI's form parser


def make_state(ps_asr, llm=None, **config):
    from speechlm.serve.state import ServeConfig, ServeState

    state = ServeState(ServeConfig(decode_processes=False, **config), llm=llm,
                       llm_name="tiny" if llm else None)
    state._asr["pocketsphinx"] = ps_asr  # the session's model: loaded once for all tests
    return state


@pytest.fixture(scope="module")
def client(ps_asr, tiny):
    from fastapi.testclient import TestClient

    from speechlm.serve.app import create_app

    state = make_state(ps_asr, tiny, max_seconds=20.0)
    with TestClient(create_app(state), raise_server_exceptions=False) as c:
        yield c
    state.close()


def post_audio(client, data: bytes, name: str = "a.wav", **form):
    return client.post("/v1/transcribe", files={"file": (name, data, "audio/wav")},
                       data={k: str(v).lower() if isinstance(v, bool) else str(v)
                             for k, v in form.items()})


def assert_error(r, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"]["code"] == code, body
    assert "Traceback" not in r.text and 'File "' not in r.text
    return body["error"]["message"]


def test_transcribe_cards(client, cards):
    r = post_audio(client, (cards / "001.wav").read_bytes(), nbest=3, utt="001")
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["text"] == "ten of clubs" and out["utt"] == "001"
    assert out["nbest"]["utt"] == "001" and len(out["nbest"]["hyps"]) == 3
    assert out["nbest"]["hyps"][0]["text"] == "ten of clubs"
    bins = out["wcn"]["bins"]
    assert all(abs(sum(e["posterior"] for e in b) - 1) < 1e-4 for b in bins)
    assert [line.split()[4] for line in out["ctm"]] == ["ten", "of", "clubs"]
    assert out["lattice"] is None and out["rescored"] is None


def test_transcribe_options(client, cards):
    wav = (cards / "002.wav").read_bytes()
    out = post_audio(client, wav, wcn=False, lattice=True, rescore=True, nbest=4).json()
    assert out["wcn"] is None and out["ctm"] == []
    assert out["lattice"]["arcs"] and out["lattice"]["utt"] == "utt"
    rescored = out["rescored"]
    assert {h["text"] for h in rescored} == {h["text"] for h in out["nbest"]["hyps"]}
    for h in rescored:
        assert h["tot_score"] == pytest.approx(h["score"] + 0.5 * h["llm_score"], abs=1e-3)


@pytest.mark.parametrize("data, code", [
    (b"GIF89a not audio", "not_audio"),
    (wav_bytes(np.zeros(8000, np.float32), 16000), "silent"),
    (wav_bytes(tone(channels=2), 16000), "channels"),
    (wav_bytes(tone(sample_rate=4000), 4000), "sample_rate"),
    (wav_bytes(tone(seconds=25.0, sample_rate=8000), 8000), "too_long"),
], ids=["not-audio", "silence", "stereo", "4kHz", "25s"])
def test_bad_uploads_get_422_with_a_message(client, data, code):
    message = assert_error(post_audio(client, data), 422, code)
    assert len(message) > 10


def test_corrupt_wav_gets_422(client, cards):
    wav = (cards / "001.wav").read_bytes()
    assert_error(post_audio(client, wav[:30]), 422, "not_audio")
    garbled = wav[:44] + bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8))
    r = post_audio(client, garbled)  # a valid header over noise: decodes or is refused
    assert r.status_code in (200, 422), r.text


def test_stereo_mixed_on_request(client):
    out = post_audio(client, wav_bytes(tone(channels=2), 16000), mix_channels=True).json()
    assert out["channels"] == 2


def test_bad_fields(client, cards):
    wav = (cards / "001.wav").read_bytes()
    assert_error(post_audio(client, wav, nbest=0), 422, "invalid_request")
    assert_error(post_audio(client, wav, nbest=99), 422, "invalid_request")
    assert_error(post_audio(client, wav, model="../../etc/passwd"), 422, "unknown_model")
    assert_error(post_audio(client, wav, utt="../../x"), 422, "invalid_request")
    assert_error(client.post("/v1/transcribe", data={"nbest": "2"}), 422, "invalid_request")


def test_no_temp_files_left(client, cards, monkeypatch, tmp_path):
    # starlette spools uploads over 1 MiB to a temp file: it must be gone afterwards
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    big = wav_bytes(tone(seconds=19.0, sample_rate=44100), 44100)  # 1.6 MB
    assert len(big) > 1 << 20
    assert post_audio(client, big, name="../../../tmp/evil.wav").status_code == 200
    assert post_audio(client, b"junk" * 300000).status_code == 422
    assert list(tmp_path.iterdir()) == []


def test_rescore(client, tiny):
    body = {"hyps": [{"text": "one two three", "score": -1.0},
                     {"text": "three two one", "score": -1.2}], "llm_scale": 0.25}
    r = client.post("/v1/rescore", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    expected = tiny.score(["one two three", "three two one"], append_eos=True)
    by_text = {h["text"]: h for h in out["hyps"]}
    assert by_text["one two three"]["llm_score"] == pytest.approx(expected[0], abs=1e-3)
    assert out["llm_scale"] == 0.25 and out["figures"]["attention_backend"]
    totals = [h["tot_score"] for h in out["hyps"]]
    assert totals == sorted(totals, reverse=True)
    with_prefix = client.post("/v1/rescore", json={**body, "prefix": "count :"}).json()
    assert with_prefix["hyps"][0]["llm_score"] != out["hyps"][0]["llm_score"]


def test_rescore_errors(client):
    assert_error(client.post("/v1/rescore", json={"hyps": []}), 422, "invalid_request")
    assert_error(client.post("/v1/rescore", json={"hyps": [{"text": "   "}]}), 422,
                 "invalid_text")
    assert_error(client.post("/v1/rescore", content=b"{not json",
                             headers={"content-type": "application/json"}), 422,
                 "invalid_request")
    long = " ".join(["one"] * 5000)
    assert_error(client.post("/v1/rescore", json={"hyps": [{"text": long[:2000]}]}), 422,
                 "invalid_text")


def test_rescore_without_llm_is_refused(ps_asr):
    from fastapi.testclient import TestClient

    from speechlm.serve.app import create_app

    with TestClient(create_app(make_state(ps_asr))) as c:
        assert_error(c.post("/v1/rescore", json={"hyps": [{"text": "a"}]}), 422, "no_llm")


def test_upload_over_the_limit_gets_413(ps_asr):
    from fastapi.testclient import TestClient

    from speechlm.serve.app import create_app

    state = make_state(ps_asr, max_upload_bytes=4096)
    with TestClient(create_app(state)) as c:
        assert_error(post_audio(c, wav_bytes(tone(), 16000)), 413, "too_large")
        assert 'speechlm_serve_rejected_total{reason="too_large"} 1' in c.get("/metrics").text


def test_queue_full_gets_429(ps_asr, cards):
    from fastapi.testclient import TestClient

    from speechlm.serve.app import create_app

    state = make_state(ps_asr, max_concurrency=1, max_waiting=0)
    release = threading.Event()
    busy = state.submit(release.wait, 30)  # the one slot is taken by real work
    try:
        with TestClient(create_app(state)) as c:
            r = post_audio(c, (cards / "001.wav").read_bytes())
            assert_error(r, 429, "queue_full")
            assert r.headers["retry-after"] == "1"
            assert state.queue_depth == 1
    finally:
        release.set()
        busy.result(timeout=30)
    assert state.queue_depth == 0
    with TestClient(create_app(state)) as c:  # the slot is free again
        assert post_audio(c, (cards / "001.wav").read_bytes()).status_code == 200


def test_health_and_metrics(client, cards):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["llm"] == "tiny"
    assert health["models"] == [{"name": "pocketsphinx", "loaded": True, "lattice": True}]
    post_audio(client, (cards / "001.wav").read_bytes())
    client.post("/v1/rescore", json={"hyps": [{"text": "one"}]})
    text = client.get("/metrics").text
    assert re.search(r'speechlm_serve_requests_total\{endpoint="/v1/transcribe",'
                     r'status="200"\} [1-9]', text)
    assert 'speechlm_llm_requests_total{kind="score"}' in text  # the runtime's counters
    assert "speechlm_serve_resident_memory_bytes" in text


# ---- a real server process on a free loopback port -------------------------------------
def test_speechlm_serve_on_a_loopback_port(cards):
    pytest.importorskip("uvicorn")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "speechlm.bin.serve", "api", "--port", "0",
                             "--llm", "none"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        line = _wait_for_line(proc, "speechlm serve: http://", 60)
        url = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        tmp = Path(line.rsplit("temp dir ", 1)[1].strip())
        assert tmp.is_dir()
        with urllib.request.urlopen(url + "/healthz", timeout=10) as r:
            assert json.load(r)["models"][0]["loaded"] is True
        body, ctype = _multipart((cards / "003.wav").read_bytes())
        req = urllib.request.Request(url + "/v1/transcribe", data=body,
                                     headers={"Content-Type": ctype})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert json.load(r)["text"] == "seven of clubs"
        with urllib.request.urlopen(url + "/openapi.json", timeout=10) as r:
            assert "/v1/transcribe" in json.load(r)["paths"]
        # a chunked body (no Content-Length) could be any size: refused before it is read
        conn = http.client.HTTPConnection(*url[len("http://"):].split(":"), timeout=10)
        conn.request("POST", "/v1/transcribe", body=iter([body]), encode_chunked=True,
                     headers={"Content-Type": ctype, "Transfer-Encoding": "chunked"})
        resp = conn.getresponse()
        assert resp.status == 411 and json.load(resp)["error"]["code"] == "length_required"
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert not tmp.exists()  # the temp dir goes with the server


def _wait_for_line(proc, marker: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if marker in line:
            return line
    raise AssertionError("server did not start:\n" + "".join(seen[-20:]))


def _multipart(data: bytes) -> tuple[bytes, str]:
    boundary = "speechlmtestboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n").encode() + data \
        + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_openai_audio_transcriptions(client, cards):
    """POST /v1/audio/transcriptions answers as OpenAI's endpoint does, for its clients."""
    wav = (cards / "001.wav").read_bytes()

    def post(**form):
        return client.post("/v1/audio/transcriptions",
                           files={"file": ("001.wav", wav, "audio/wav")}, data=form)

    r = post(model="whisper-1")
    assert r.status_code == 200 and r.json() == {"text": "ten of clubs"}, r.text
    r = post(model="pocketsphinx", response_format="text")
    assert r.status_code == 200 and r.text == "ten of clubs\n"
    out = post(model="pocketsphinx", response_format="verbose_json").json()
    assert out["text"] == "ten of clubs" and out["duration"] > 0.5
    assert [w["word"] for w in out["words"]] == ["ten", "of", "clubs"]
    starts = [w["start"] for w in out["words"]]
    assert starts == sorted(starts) and all(w["end"] > w["start"] for w in out["words"])
    assert out["words"][-1]["end"] <= out["duration"] + 0.05
    for form, status, param in (({"model": "nope"}, 404, "model"),
                                ({"model": "whisper-1", "response_format": "srt"}, 400,
                                 "response_format")):
        r = post(**form)
        assert r.status_code == status and r.json()["error"]["param"] == param, r.text
    r = client.post("/v1/audio/transcriptions", data={"model": "whisper-1"})
    assert r.status_code == 422  # no file
    r = client.post("/v1/audio/transcriptions", files={"file": ("x.wav", b"RIFF", "audio/wav")},
                    data={"model": "whisper-1"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "file", r.text
