"""Online detection: a fault injected behind a serve-format /metrics raises an alert.

The /metrics text comes from speechlm serve's own ``ServeMetrics`` (the class behind
``speechlm serve``'s /metrics), fed by a stand-in backend whose requests we control; the
monitor scrapes it over HTTP exactly as it scrapes a running ``speechlm serve``.
"""
from __future__ import annotations

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from speechlm.core.errors import InputError
from speechlm.monitor.online import Monitor, derive, parse_prometheus, serve_alerts
from speechlm.monitor.sandbox import SandboxLimits
from speechlm.serve.state import ServeMetrics

RULES = Path(__file__).parents[2] / "egs/nab/argos1/conf/serve_rules"
FAST = SandboxLimits(cpu_s=1, wall_s=8, memory_mb=200)


@pytest.fixture
def serve_metrics():
    metrics = ServeMetrics()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = metrics.prometheus_text(queue_depth=0).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield metrics, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _traffic(metrics: ServeMetrics, i: int, fault: bool) -> None:
    for k in range(5):
        if fault:
            metrics.observe("/v1/transcribe", 500, 2.0 + 0.1 * k)
        else:
            metrics.observe("/v1/transcribe", 200, 0.020 + 0.002 * ((i + k) % 5))
    metrics.observe("/metrics", 200, 0.001)  # scrapes are not traffic


def test_injected_fault_fires_then_resolves(serve_metrics, tmp_path):
    metrics, url = serve_metrics
    lines = []
    monitor = Monitor(url, RULES, min_history=6, limits=FAST, record_dir=tmp_path / "rec",
                      log=lines.append)
    alerts = serve_alerts(monitor, 0)
    try:
        monitor.step()  # first scrape: a baseline, no point yet
        for i in range(6):
            _traffic(metrics, i, fault=False)
            assert monitor.step() == [], lines
        _traffic(metrics, 99, fault=True)
        raised = monitor.step()
        assert {a["series"] for a in raised} == {"latency_mean_s", "error_ratio"}
        lat = next(a for a in raised if a["series"] == "latency_mean_s")
        assert lat["rule"] == "latency-robust-z" and lat["value"] == pytest.approx(2.2)
        assert any("ALERT latency_mean_s" in x for x in lines)
        port = alerts.server_address[1]
        got = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/alerts").read())
        assert len(got["firing"]) == 2
        gauge = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        assert 'speechlm_monitor_alert{series="latency_mean_s"} 1' in gauge
        _traffic(metrics, 100, fault=False)
        assert monitor.step() == [] and not monitor.firing
        assert monitor.alerts[-1]["state"] == "resolved"
    finally:
        alerts.shutdown()
    rec = (tmp_path / "rec/data/serve/latency_mean_s.csv").read_text().splitlines()
    assert rec[0] == "timestamp,value" and len(rec) == 1 + 8


def test_unreachable_server_is_logged_not_raised(tmp_path):
    lines = []
    monitor = Monitor("http://127.0.0.1:9", RULES, log=lines.append)
    assert monitor.step() == [] and monitor.stats["scrape_errors"] == 1
    assert "scrape of http://127.0.0.1:9/metrics failed" in lines[0]


def test_deploy_naming_an_unknown_series(tmp_path):
    (tmp_path / "deploy.json").write_text('{"gpu_temp": []}')
    with pytest.raises(InputError, match="unknown series"):
        Monitor("http://127.0.0.1:9", tmp_path)


def test_derive_from_serve_exposition():
    m = ServeMetrics()
    before = parse_prometheus(m.prometheus_text(0))
    m.observe("/v1/rescore", 200, 0.5)
    m.observe("/v1/rescore", 503, 1.5)
    from speechlm.monitor.online import _totals

    point = derive(_totals(before), _totals(parse_prometheus(m.prometheus_text(3))), 2.0)
    assert point["latency_mean_s"] == 1.0 and point["error_ratio"] == 0.5
    assert point["request_rate"] == 1.0 and point["queue_depth"] == 3
