"""Loopback load test of the HTTP API: requests/s, p50/p95 latency, errors, server memory.

    python tools/bench/serve_load.py [--requests 200] [--concurrency 4] [--audio a.wav ...]
    python tools/bench/serve_load.py --url http://127.0.0.1:7860   # a server already running

Without ``--url`` it starts ``speechlm serve api --port 0`` (PocketSphinx; pass
``--serve-args`` for more) and stops it at the end. Bounded on purpose: a fixed number of
requests, a wall-clock cap, loopback URLs only. Requests go from ``--concurrency`` client
threads to ``POST /v1/transcribe``, cycling over the audio files (default: the cards
samples in ../shared/data). After ``--warmup`` requests, the server's resident memory is
read from ``/metrics`` every ``--requests / 10`` requests (the server process plus its
decode workers); "flat memory" means the last reading is within a few MB of the first.
While the load runs, a probe thread times ``GET /healthz`` every 0.25 s: its p50/max show
whether the server stays responsive under full load.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def multipart(data: bytes, name: str, fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = "speechlmloadboundary"
    parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
             .encode() for k, v in fields.items()]
    parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                 f"filename=\"{name}\"\r\nContent-Type: audio/wav\r\n\r\n".encode() + data
                 + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), \
        f"multipart/form-data; boundary={boundary}"


def server_rss(host: str, port: int) -> int | None:
    """Resident memory of the server and its decode workers (bytes), from /metrics."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    sizes = [int(m) for m in re.findall(r"^speechlm_serve_(?:worker_)?resident_memory_bytes "
                                        r"(\d+)", text, re.M)]
    return sum(sizes) if sizes else None


def start_server(extra: list[str]) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if not any(a.startswith("--llm") for a in extra):
        extra = [*extra, "--llm", "none"]  # decoding load only, as the README's figures
    proc = subprocess.Popen([sys.executable, "-m", "speechlm.bin.serve", "api", "--port", "0",
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        m = re.search(r"speechlm serve: (http://\S+?:\d+)", line)
        if m:
            # keep draining the server's output so it never blocks on a full pipe
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc, m.group(1)
    proc.kill()
    raise SystemExit("serve_load: the server did not start")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=None, help="a running server (loopback only)")
    ap.add_argument("--serve-args", default="", help="extra args for speechlm serve")
    ap.add_argument("--requests", type=int, default=200, help="measured requests (max 5000)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=4, help="client threads (max 32)")
    ap.add_argument("--max-seconds", type=float, default=300, help="stop after this long")
    ap.add_argument("--audio", nargs="*", default=None, help="WAV files to send")
    ap.add_argument("--fields", default='{"nbest": "5"}',
                    help="JSON of form fields, e.g. {\"nbest\": \"5\", \"wcn\": \"true\"}")
    ap.add_argument("--json", default=None, help="also write the summary here")
    args = ap.parse_args()
    if not 1 <= args.requests <= 5000 or not 1 <= args.concurrency <= 32:
        raise SystemExit("serve_load: need 1 <= --requests <= 5000, 1 <= --concurrency <= 32")

    audio = [Path(a) for a in args.audio] if args.audio else None
    if audio is None:
        from speechlm.testing.shared_data import shared_data_dir

        cards = shared_data_dir("english_speech_samples/pocketsphinx_cards")
        if cards is None:
            raise SystemExit("serve_load: no --audio and no ../shared/data cards samples")
        audio = sorted(cards.glob("*.wav"))
    fields = json.loads(args.fields)
    bodies = [multipart(p.read_bytes(), p.name, fields) for p in audio]

    proc = None
    if args.url is None:
        proc, url = start_server(args.serve_args.split())
    else:
        url = args.url
    parsed = urllib.parse.urlparse(url)
    if parsed.hostname not in LOOPBACK:
        raise SystemExit(f"serve_load: loopback only, got {parsed.hostname}")
    host, port = parsed.hostname, parsed.port

    lock = threading.Lock()
    latencies: list[float] = []
    codes: list[int] = []
    statuses: dict[int, int] = {}
    rss: list[tuple[int, int]] = []
    counter = {"next": 0}
    total = args.warmup + args.requests
    stop_at = time.monotonic() + args.max_seconds
    sample_every = max(args.requests // 10, 1)

    def worker():
        conn = http.client.HTTPConnection(host, port, timeout=120)
        while True:
            with lock:
                i = counter["next"]
                if i >= total or time.monotonic() > stop_at:
                    break
                counter["next"] += 1
            body, ctype = bodies[i % len(bodies)]
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/v1/transcribe", body=body,
                             headers={"Content-Type": ctype})
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=120)
            dt = time.perf_counter() - t0
            if i >= args.warmup:
                with lock:
                    latencies.append(dt)
                    codes.append(status)
                    statuses[status] = statuses.get(status, 0) + 1
                j = i - args.warmup
                if j % sample_every == 0 or j == args.requests - 1:
                    value = server_rss(host, port)
                    if value is not None:
                        with lock:
                            rss.append((j, value))
        conn.close()

    health: list[float] = []
    done = threading.Event()

    def probe():  # how fast the server answers a health check under this load
        while not done.wait(0.25):
            t0 = time.perf_counter()
            try:
                conn = http.client.HTTPConnection(host, port, timeout=30)
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                conn.close()
                health.append(time.perf_counter() - t0)
            except (OSError, http.client.HTTPException):
                health.append(float("inf"))

    rss_before = server_rss(host, port)
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    prober = threading.Thread(target=probe)
    prober.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t_start
    done.set()
    prober.join()
    load_after = os.getloadavg()
    rss_after = server_rss(host, port)
    if proc is not None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)

    lat = sorted(latencies)
    ok = [dt for dt, st in zip(latencies, codes, strict=True) if st == 200]

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")

    rss.sort()
    summary = {
        "requests": len(lat), "concurrency": args.concurrency, "audio_files": len(audio),
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(lat) / wall, 2) if wall else None,
        "p50_s": round(pct(0.50), 3), "p95_s": round(pct(0.95), 3),
        "max_s": round(lat[-1], 3) if lat else None, "statuses": statuses,
        "share_429": round(statuses.get(429, 0) / len(lat), 3) if lat else None,
        "p50_s_200": round(sorted(ok)[len(ok) // 2], 3) if ok else None,
        "errors": sum(n for s, n in statuses.items() if s not in (200, 429)),
        "healthz_p50_s": round(sorted(health)[len(health) // 2], 4) if health else None,
        "healthz_max_s": round(max(health), 4) if health else None,
        "rss_mb_before": round(rss_before / 2**20, 1) if rss_before else None,
        "rss_mb_after": round(rss_after / 2**20, 1) if rss_after else None,
        "rss_mb_first": round(rss[0][1] / 2**20, 1) if rss else None,
        "rss_mb_last": round(rss[-1][1] / 2**20, 1) if rss else None,
        "rss_mb_samples": [round(v / 2**20, 1) for _, v in rss],
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after], "cpus": os.cpu_count(),
    }
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
