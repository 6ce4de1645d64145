"""The agents on recorded real SmolLM2-135M-Instruct answers (fixtures/smollm2_argos.jsonl,
written by ``record_llm_fixture.py``; no model is loaded here and no answer is invented:
a prompt that was not recorded is a ``ReplayMiss``)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from nab_helpers import make_nab_dir

from speechlm.monitor.agents import ArgosConfig
from speechlm.monitor.calls import LLMClient, ReplayMiss, load_prompt
from speechlm.monitor.pipeline import evaluate, train
from speechlm.monitor.rule import load_rules

FIXTURE = Path(__file__).parent / "fixtures" / "smollm2_argos.jsonl"
MODEL = "smollm2-135m-instruct"
FAST = dict(cpu_s=2, wall_s=10, memory_mb=256)


def _client(tmp_path):
    return LLMClient(model=MODEL, log_path=tmp_path / "calls.jsonl", replay_from=FIXTURE)


def test_train_on_recorded_answers_writes_rules_with_provenance(tmp_path):
    data, exp = make_nab_dir(tmp_path / "nab"), tmp_path / "exp"
    client = _client(tmp_path)
    summary = train(data, exp, client, ArgosConfig(**FAST), log=lambda m: None)
    assert set(summary) == {"synthA", "synthB"}
    assert all(g["llm_calls"] >= 1 and g["prompt_tokens"] > 0 for g in summary.values())
    calls = [json.loads(x) for x in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert calls and all(c["replayed"] and c["generated_tokens"] > 0 for c in calls)
    assert calls[0]["agent"] == "detect" and calls[0]["prompt"] == "detect_v1"
    reviews = [json.loads(x) for x in (exp / "reviews.jsonl").read_text().splitlines()]
    assert {r["decision"] for r in reviews} <= {"accepted", "not_accepted", "rejected"}
    deploy = json.loads((exp / "deploy.json").read_text())
    for group, names in deploy.items():
        rules = load_rules(exp / "rules" / group)
        assert [r.name for r in rules] == sorted(names)
        for rule in rules:
            p = rule.provenance
            assert p["model"] == MODEL and p["prompt_sha256"] == load_prompt("detect_v1")[1]
            assert p["train_f1"] >= p["train_f1_before"] and p["train_f1"] > 0
    # SmolLM2's synthB rule used np without importing it; the recorded repair answer
    # added the import, and review accepted the repaired rule
    assert summary["synthB"]["repairs"] == 1 and summary["synthB"]["repaired_ok"] == 1
    review = next(r for r in reviews if r["group"] == "synthB")
    assert [a["kind"] for a in review["attempts"]] == ["exception", "ok"]
    assert "NameError: name 'np' is not defined" in review["attempts"][0]["error"]
    assert review["decision"] == "accepted"
    assert [c["agent"] for c in calls] == ["detect", "detect", "repair"]
    results = evaluate(data, exp, config=ArgosConfig(**FAST), detectors=("seasonal",))
    table = results["table"]
    assert set(table) == {"seasonal", "argos", "argos_or_seasonal", "argos_and_seasonal",
                          "argos_weighted_seasonal"}
    # synthB's accepted rule is a 3-sigma rule: on the test half it finds the level shift
    assert table["argos"]["point_adjusted"]["recall"] > 0


def test_a_changed_prompt_is_a_replay_miss(tmp_path):
    client = _client(tmp_path)
    with pytest.raises(ReplayMiss, match="no recorded answer for this detect prompt"):
        client.chat("detect", "detect_v1", [{"role": "user", "content": "hello"}],
                    ArgosConfig().sampling(0))


def test_config_refuses_repeated_greedy_candidates():
    with pytest.raises(ValueError, match="repeats one answer"):
        ArgosConfig(candidates=3)


def test_review_refuses_a_repeated_program(tmp_path):
    """The same chunk twice gets the same recorded answer; the second copy is refused."""
    from speechlm.monitor.agents import train_group
    from speechlm.monitor.nab import read_nab, split

    spikes = split(read_nab(make_nab_dir(tmp_path / "nab"))[1])[0]
    result = train_group("synthA", [spikes, spikes], _client(tmp_path), ArgosConfig(**FAST),
                         log=lambda m: None)
    assert len(result.rules) == 1
    assert [r["decision"] for r in result.reviews] == ["accepted", "not_accepted"]
    assert result.reviews[1]["reason"] == "the same program as an accepted rule"
