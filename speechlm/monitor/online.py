"""Online detection on ``speechlm serve``: scrape ``/metrics``, derive series, run the
deployed rules in the sandbox every interval, raise alerts.

Series derived per scrape (differences of counters between two scrapes; NaN when the
interval saw no request, so a rule sees "no data" rather than a made-up zero):

- ``latency_mean_s``: mean request latency (``speechlm_serve_request_seconds``, API
  endpoints only; ``/metrics`` and ``/healthz`` are left out);
- ``error_ratio``: share of those requests answered 5xx;
- ``request_rate``: API requests per second;
- ``queue_depth``: ``speechlm_serve_queue_depth``;
- ``rejected_rate``: refused requests per second (``speechlm_serve_rejected_total``);
- ``llm_tokens_per_s``: mean runtime throughput per LLM call
  (``speechlm_llm_tokens_per_second``).

Rules directory: ``deploy.json`` maps a series name to rule names, whose
``<name>.rule.json`` files sit beside it. A rule sees the series' recent history
(``history`` points, with timestamps) and an alert fires when it flags the newest point.
``record_dir`` also appends every point to ``<record_dir>/data/serve/<series>.csv`` in
NAB form, so a recording can be labelled and given to ``speechlm monitor train``.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
import urllib.request
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from speechlm.core.errors import InputError
from speechlm.monitor.rule import Rule
from speechlm.monitor.sandbox import SandboxLimits, run_rule

__all__ = ["parse_prometheus", "derive", "Monitor", "serve_alerts", "SERIES"]

SERIES = ("latency_mean_s", "error_ratio", "request_rate", "queue_depth", "rejected_rate",
          "llm_tokens_per_s")
_LINE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_SKIP = ("/metrics", "/healthz")


def parse_prometheus(text: str) -> list[tuple[str, dict, float]]:
    """(name, labels, value) for every sample line of a text exposition.

    >>> parse_prometheus('a_total{kind="x",le="+Inf"} 3\\n# HELP b b\\nb 1.5')
    [('a_total', {'kind': 'x', 'le': '+Inf'}, 3.0), ('b', {}, 1.5)]
    """
    out = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if m is None or line.startswith("#"):
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        out.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), value))
    return out


def _totals(samples: list[tuple[str, dict, float]]) -> dict[str, float]:
    t = dict.fromkeys(("lat_sum", "lat_count", "req", "err", "rejected", "tps_sum",
                       "tps_count"), 0.0)
    t["queue"] = math.nan
    for name, labels, v in samples:
        if labels.get("endpoint") in _SKIP:
            continue
        if name == "speechlm_serve_request_seconds_sum":
            t["lat_sum"] += v
        elif name == "speechlm_serve_request_seconds_count":
            t["lat_count"] += v
        elif name == "speechlm_serve_requests_total":
            t["req"] += v
            if labels.get("status", "").startswith("5"):
                t["err"] += v
        elif name == "speechlm_serve_rejected_total":
            t["rejected"] += v
        elif name == "speechlm_serve_queue_depth":
            t["queue"] = v
        elif name == "speechlm_llm_tokens_per_second_sum":
            t["tps_sum"] += v
        elif name == "speechlm_llm_tokens_per_second_count":
            t["tps_count"] += v
    return t


def derive(prev: dict[str, float], now: dict[str, float], seconds: float) -> dict[str, float]:
    """One point per series from two scrapes' totals ``seconds`` apart."""

    def ratio(a: str, b: str) -> float:
        d = now[b] - prev[b]
        return (now[a] - prev[a]) / d if d > 0 else math.nan

    dt = max(seconds, 1e-9)
    return {"latency_mean_s": ratio("lat_sum", "lat_count"), "error_ratio": ratio("err", "req"),
            "request_rate": (now["req"] - prev["req"]) / dt, "queue_depth": now["queue"],
            "rejected_rate": (now["rejected"] - prev["rejected"]) / dt,
            "llm_tokens_per_s": ratio("tps_sum", "tps_count")}


class Monitor:
    """Scrape, derive, detect, alert.

    Args:
        url: ``speechlm serve`` base URL (``/metrics`` is appended).
        rules_dir: ``deploy.json`` + rule files (see the module docstring).
        history: points kept per series (what a rule sees).
        min_history: points needed before rules run.
        limits: sandbox limits per rule run.
        record_dir: append the points to NAB-form CSVs here (None: off).
        log: print-like function for alert lines.
    """

    def __init__(self, url: str, rules_dir: str | Path, history: int = 360,
                 min_history: int = 10, limits: SandboxLimits | None = None,
                 record_dir: str | Path | None = None, log=print) -> None:
        self.url = url.rstrip("/") + "/metrics"
        rules_dir = Path(rules_dir)
        try:
            deploy = json.loads((rules_dir / "deploy.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"{rules_dir}/deploy.json: cannot read: {e}") from e
        unknown = sorted(set(deploy) - set(SERIES))
        if unknown:
            raise InputError(f"{rules_dir}/deploy.json: unknown series {unknown}; "
                             f"choose from {SERIES}")
        self.rules = {s: [Rule.load(rules_dir / f"{n}.rule.json") for n in names]
                      for s, names in deploy.items()}
        self.limits = limits or SandboxLimits(cpu_s=2, wall_s=30, memory_mb=256)
        self.min_history, self.log = min_history, log
        self.record_dir = Path(record_dir) if record_dir else None
        self.points = {s: deque(maxlen=history) for s in SERIES}
        self.stamps: deque = deque(maxlen=history)
        self._prev: tuple[float, dict] | None = None
        self.firing: dict[str, dict] = {}
        self.alerts: deque = deque(maxlen=200)
        self.stats = {"scrapes": 0, "scrape_errors": 0, "evaluations": 0, "eval_wall_s": 0.0,
                      "eval_cpu_s": 0.0}
        self._lock = threading.Lock()

    def scrape(self) -> dict[str, float] | None:
        """Fetch ``/metrics`` and return the new point (None for the first scrape)."""
        now = time.time()
        with urllib.request.urlopen(self.url, timeout=10) as response:
            totals = _totals(parse_prometheus(response.read().decode()))
        prev, self._prev = self._prev, (now, totals)
        if prev is None:
            return None
        return derive(prev[1], totals, now - prev[0])

    def step(self) -> list[dict]:
        """One interval: scrape, store, run the rules; returns the alerts raised now."""
        try:
            point = self.scrape()
        except OSError as e:
            self.stats["scrape_errors"] += 1
            self.log(f"[monitor] scrape of {self.url} failed: {e}")
            return []
        self.stats["scrapes"] += 1
        if point is None:
            return []
        stamp = self._prev[0]
        self.stamps.append(stamp)
        for name, value in point.items():
            self.points[name].append(value)
        if self.record_dir is not None:
            self._record(stamp, point)
        if len(self.stamps) < self.min_history:
            return []
        raised = []
        t = np.array(self.stamps)
        for name, rules in self.rules.items():
            v = np.array(self.points[name], dtype=np.float64)
            hit = None
            for rule in rules:
                run = run_rule(rule, [(v, t)], self.limits)
                self.stats["evaluations"] += 1
                self.stats["eval_wall_s"] += run.wall_s
                self.stats["eval_cpu_s"] += run.cpu_s or 0.0
                if not run.ok:
                    self.log(f"[monitor] rule {rule.name} on {name} failed: {run.kind}: "
                             f"{run.error}")
                elif run.masks[0][-1]:
                    hit = rule
                    break
            with self._lock:
                if hit is not None and name not in self.firing:
                    alert = {"series": name, "rule": hit.name, "value": float(v[-1]),
                             "since": stamp, "state": "firing"}
                    self.firing[name] = alert
                    self.alerts.append(alert)
                    raised.append(alert)
                    self.log(f"[monitor] ALERT {name}={v[-1]:.4g} flagged by {hit.name}")
                elif hit is None and name in self.firing:
                    self.alerts.append({**self.firing.pop(name), "state": "resolved",
                                        "resolved": stamp})
                    self.log(f"[monitor] resolved {name}")
        return raised

    def _record(self, stamp: float, point: dict[str, float]) -> None:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(stamp))
        for name, value in point.items():
            path = self.record_dir / "data" / "serve" / f"{name}.csv"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("timestamp,value\n")
            with path.open("a") as f:
                f.write(f"{when},{'' if math.isnan(value) else repr(value)}\n")

    def loop(self, interval: float, iterations: int = 0) -> None:
        n = 0
        while not iterations or n < iterations:
            start = time.monotonic()
            self.step()
            n += 1
            time.sleep(max(0.0, interval - (time.monotonic() - start)))

    def alerts_json(self) -> dict:
        with self._lock:
            return {"firing": list(self.firing.values()), "recent": list(self.alerts),
                    "stats": dict(self.stats)}

    def prometheus_text(self) -> str:
        lines = ["# HELP speechlm_monitor_alert 1 while a rule flags the series' newest point.",
                 "# TYPE speechlm_monitor_alert gauge"]
        with self._lock:
            lines += [f'speechlm_monitor_alert{{series="{s}"}} {int(s in self.firing)}'
                      for s in self.rules]
            lines += ["# TYPE speechlm_monitor_rule_evaluations_total counter",
                      f"speechlm_monitor_rule_evaluations_total {self.stats['evaluations']}",
                      "# TYPE speechlm_monitor_rule_seconds_total counter",
                      f"speechlm_monitor_rule_seconds_total {self.stats['eval_wall_s']:.6f}"]
        return "\n".join(lines) + "\n"


def serve_alerts(monitor: Monitor, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """``GET /v1/alerts`` (JSON) and ``GET /metrics`` on a daemon thread; ``.shutdown()``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the stdlib's name)
            if self.path == "/v1/alerts":
                body, kind = json.dumps(monitor.alerts_json()).encode(), "application/json"
            elif self.path == "/metrics":
                body, kind = monitor.prometheus_text().encode(), "text/plain; version=0.0.4"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # quiet
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
