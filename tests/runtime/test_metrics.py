"""Metrics: one record per call with the documented fields, JSON lines, Prometheus text."""

from __future__ import annotations

import json
import re

import pytest

from speechlm.runtime import SamplingParams
from speechlm.runtime.energy.meter import EnergyMeter
from speechlm.runtime.metrics import CallRecord, Histogram, RuntimeMetrics
from speechlm.testing.llm import tiny_llm

_SAMPLE = re.compile(
    r'^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+-]+$|^[a-z_]+\{.*\} \+Inf$'
)


def test_calls_are_recorded(tmp_path):
    path = tmp_path / "m" / "calls.jsonl"
    llm = tiny_llm("llama", metrics_path=path)
    # a prefix long enough to be prefilled once and cached (a short one is folded into rows)
    prefix = "count : one two three four five six seven eight nine ten one two three four five"
    llm.score(["one two", "three four five"], prefix=prefix)
    llm.generate(["one two", "the water is"], SamplingParams(max_tokens=4))
    score, gen = llm.metrics.records
    n_prefix = len(llm.tokenizer(prefix)["input_ids"])  # BOS + 17
    assert n_prefix == 18
    # the prefix counted once, then 2 + 3 text tokens
    assert (score.kind, score.prompt_tokens, score.generated_tokens) == ("score", 18 + 5, 0)
    assert score.prefill_s > 0 and score.decode_s == 0 and score.kv_cache_bytes > 0
    assert gen.kind == "generate" and gen.prompt_tokens == 3 + 4
    assert 1 <= gen.generated_tokens <= 8 and gen.decode_s > 0 and gen.batch_size == 2
    assert gen.tokens_per_s == pytest.approx(
        (gen.prompt_tokens + gen.generated_tokens) / (gen.prefill_s + gen.decode_s)
    )
    assert gen.peak_memory_bytes > 0
    # KV bytes: 2 layers x (K and V) x batch 2 x 2 kv heads x (5 prompt + 3 steps) x 16 dims x 4 B
    assert gen.kv_cache_bytes <= 2 * 2 * 2 * 2 * 8 * 16 * 4
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["kind"] for x in lines] == ["score", "generate"]
    assert lines[0]["energy_j"] is None  # metering off: null, never a made-up number


def test_prometheus_text_is_well_formed():
    llm = tiny_llm("llama")
    llm.score(["one two"])
    llm.generate("one", SamplingParams(max_tokens=3))
    text = llm.metrics.prometheus_text()
    for line in text.strip().splitlines():
        if not line.startswith("#"):
            assert _SAMPLE.match(line), line
    assert 'speechlm_llm_requests_total{kind="score"} 1' in text
    assert "# TYPE speechlm_llm_prefill_seconds histogram" in text
    assert 'speechlm_llm_prefill_seconds_bucket{kind="generate",le="+Inf"} 1' in text
    assert 'speechlm_llm_decode_seconds_count{kind="score"}' not in text  # scoring has no decode
    assert "energy" not in text  # nothing measured, so no energy series at all


def test_energy_counter_only_with_real_readings():
    m = RuntimeMetrics()
    m.record(
        CallRecord(
            kind="generate",
            prompt_tokens=3,
            generated_tokens=2,
            prefill_s=0.1,
            decode_s=0.1,
            energy_j=1.5,
        )
    )
    m.record(CallRecord(kind="generate", energy_j=None))
    assert 'speechlm_llm_energy_joules_total{kind="generate"} 1.5' in m.prometheus_text()
    assert m.counter("requests", "generate") == 2


def test_energy_meter_reads_none_or_positive():
    meter = EnergyMeter()
    meter.begin()
    sum(range(10000))
    joules = meter.end()
    assert joules is None or joules > 0  # zeus reads nothing on this kind of machine
    assert EnergyMeter(enabled=False).end() is None


def test_histogram_and_record_validation():
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.5, 5.0):
        h.observe(v)
    assert h.counts == [1, 2] and h.count == 3
    with pytest.raises(ValueError, match="kind"):
        CallRecord(kind="train")
    with pytest.raises(ValueError, match="sorted"):
        Histogram((1.0, 0.1))


def test_concurrent_calls_are_serialized():
    """Threads share one LLM: calls queue, so per-call state (governor steps, energy
    window, metrics) never interleaves and results equal sequential ones."""
    import threading

    from speechlm.runtime.energy.governor import RecordingGovernor

    llm = tiny_llm("llama", energy_governor=RecordingGovernor())  # raises on interleaving
    expected = llm.score(["one two", "three four"], prefix="count")
    out, errors = [], []

    def work():
        try:
            out.append(llm.score(["one two", "three four"], prefix="count"))
            llm.generate("one two", SamplingParams(max_tokens=3))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(o == pytest.approx(expected, abs=1e-6) for o in out) and len(out) == 4
    assert llm.metrics.counter("requests", "score") == 5
