"""Inject a slow backend into a real ``speechlm serve`` and watch ``speechlm monitor``
raise the alert.

Starts ``speechlm serve api`` (PocketSphinx, one decode worker) on a free port and the
monitor (``conf/serve_rules``) scraping it every ``--interval`` seconds. A client sends
short clips (0.5 s of noise) for ``--normal`` intervals, then long clips (``--slow-seconds``
of noise: the decoder becomes the slow backend) until the latency alert fires or
``--fault`` intervals pass. Writes a JSON report (alert time, latencies, rule cost).
"""
from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np

from speechlm.monitor.online import Monitor


def wav(seconds: float, rate: int = 16000) -> bytes:
    import soundfile as sf

    x = np.random.default_rng(0).normal(0, 0.05, int(seconds * rate)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def post(url: str, audio: bytes) -> float:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n").encode() + audio + \
        f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(url + "/v1/transcribe", data=body, headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    start = time.perf_counter()
    try:
        urllib.request.urlopen(req, timeout=120).read()
    except OSError as e:
        print(f"request failed: {e}", file=sys.stderr)
    return time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rules", type=Path, default=Path("conf/serve_rules"))
    p.add_argument("--interval", type=float, default=2.0)
    p.add_argument("--normal", type=int, default=12)
    p.add_argument("--fault", type=int, default=15)
    p.add_argument("--slow-seconds", type=float, default=6.0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    serve = subprocess.Popen([sys.executable, "-m", "speechlm.bin.serve", "api", "--port", "0",
                              "--max-concurrency", "1"], stdout=subprocess.PIPE, text=True)
    try:
        url = None
        for line in serve.stdout:
            if "http://" in line:
                url = line[line.index("http://"):].split()[0].rstrip("/")
                break
        if url is None:
            raise SystemExit("speechlm serve printed no URL")
        print(f"serve at {url}", file=sys.stderr)
        lines: list[str] = []

        def log(message: str) -> None:
            lines.append(message)
            print(message, file=sys.stderr)

        monitor = Monitor(url, args.rules, min_history=6, log=log)
        phase = {"fault": False, "stop": False}
        latencies = {"normal": [], "fault": []}

        def client():
            short, slow = wav(0.5), wav(args.slow_seconds)
            while not phase["stop"]:
                key = "fault" if phase["fault"] else "normal"
                latencies[key].append(post(url, slow if phase["fault"] else short))
                time.sleep(0.2)

        threading.Thread(target=client, daemon=True).start()
        fired_at, step, fault_start = None, 0, None
        t0 = time.time()
        for step in range(args.normal + args.fault + 1):
            if step == args.normal + 1:
                phase["fault"] = True
                fault_start = time.time()
            start = time.monotonic()
            raised = monitor.step()
            if phase["fault"] and any(a["series"] == "latency_mean_s" for a in raised):
                fired_at = time.time()
                break
            time.sleep(max(0.0, args.interval - (time.monotonic() - start)))
        phase["stop"] = True
        s = monitor.stats
        report = {
            "url": url, "interval_s": args.interval, "steps": step + 1,
            "alerts": list(monitor.alerts), "false_alarms_before_fault": sum(
                1 for a in monitor.alerts if a["state"] == "firing"
                and (fault_start is None or a["since"] < fault_start)),
            "alert_after_fault_s": (fired_at - fault_start) if fired_at else None,
            "normal_latency_s": float(np.median(latencies["normal"] or [np.nan])),
            "fault_latency_s": float(np.median(latencies["fault"] or [np.nan])),
            "rule_evaluations": s["evaluations"],
            "rule_wall_s_per_evaluation": s["eval_wall_s"] / max(1, s["evaluations"]),
            "rule_child_cpu_s_per_evaluation": s["eval_cpu_s"] / max(1, s["evaluations"]),
            "series_csv_history": {k: [None if np.isnan(x) else round(x, 4) for x in v]
                                   for k, v in monitor.points.items()
                                   if k in ("latency_mean_s", "error_ratio")},
            "seconds": time.time() - t0}
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(json.dumps({k: v for k, v in report.items() if k != "series_csv_history"}))
        return 0 if report["alert_after_fault_s"] is not None else 1
    finally:
        serve.terminate()
        serve.wait(timeout=60)


if __name__ == "__main__":
    raise SystemExit(main())
