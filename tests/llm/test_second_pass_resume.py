"""Resumable second-pass runs: per-utterance results survive a kill, and the demonstrations
an utterance gets do not depend on where a run started."""
from __future__ import annotations

import json

import pytest

from speechlm.llm.second_pass import methods as M
from speechlm.llm.second_pass.nbest import NbestItem
from speechlm.llm.second_pass.run import EvalSet, run_method, run_resumable
from speechlm.testing.llm import tiny_config, tiny_tokenizer

ITEMS = [NbestItem(f"u{i}", (f"w{i} a", f"w{i} b"), f"w{i} b") for i in range(7)]
FP = {"config": "x"}


class Counting:
    """A run_on that records the utterances it was given and dies after ``die_after``."""

    def __init__(self, die_after: int | None = None, ger: bool = False) -> None:
        self.seen: list[str] = []
        self.die_after, self.ger = die_after, ger

    def __call__(self, items):
        if self.die_after is not None and len(self.seen) >= self.die_after:
            raise KeyboardInterrupt  # what a kill looks like from inside
        self.seen += [it.utt for it in items]
        if self.ger:
            return {it.utt: M.Correction(it.hyps[1], 0.5, "") for it in items}
        return {it.utt: M.Scored([0.0, float(len(it.utt))], 0.25) for it in items}


def test_a_killed_run_resumes_where_it_stopped(tmp_path):
    path = tmp_path / "partial-dev.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run_resumable(Counting(die_after=2), ITEMS, path, FP, chunk=2)
    assert len(path.read_text().splitlines()) == 1 + 2  # fingerprint + the finished chunk
    again = Counting()
    got = run_resumable(again, ITEMS, path, FP, chunk=2)
    assert again.seen == [it.utt for it in ITEMS[2:]]  # the first chunk is not redone
    assert got == run_resumable(Counting(), ITEMS, tmp_path / "whole.jsonl", FP, chunk=2)
    assert list(got) == [it.utt for it in ITEMS]


def test_a_cut_line_and_what_follows_are_redone(tmp_path):
    path = tmp_path / "p.jsonl"
    run_resumable(Counting(), ITEMS[:3], path, FP, chunk=5)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:2], lines[2][:9], lines[3]]) + "\n")  # u1 cut
    again = Counting()
    run_resumable(again, ITEMS[:3], path, FP)
    assert again.seen == ["u1", "u2"]
    assert [json.loads(x) for x in path.read_text().splitlines()][0] == {"fingerprint": FP}


def test_another_setting_starts_over_and_ger_outputs_round_trip(tmp_path):
    path = tmp_path / "p.jsonl"
    run_resumable(Counting(), ITEMS[:2], path, FP)
    other = Counting(ger=True)
    first = run_resumable(other, ITEMS[:2], path, {"config": "ger"})
    assert other.seen == ["u0", "u1"]
    idle = Counting(die_after=0)  # everything is on file: never called
    assert run_resumable(idle, ITEMS[:2], path, {"config": "ger"}) == first
    assert first["u0"] == M.Correction("w0 b", 0.5, "")


def test_random_demonstrations_depend_on_the_utterance_not_the_order():
    train = [NbestItem(f"t{i}", (f"train {i}",), f"train {i}") for i in range(20)]
    a = M.DemoPool(train, 3, "random", seed=1)
    b = M.DemoPool(train, 3, "random", seed=1)
    forward = [a.for_item(it) for it in ITEMS]
    backward = [b.for_item(it) for it in reversed(ITEMS)][::-1]
    assert forward == backward
    assert len({tuple(d.utt for d in x) for x in forward}) > 1  # still random across utts
    assert M.DemoPool(train, 3, "random", seed=2).for_item(ITEMS[0]) != forward[0]


def test_run_method_reads_back_every_utterance_after_a_kill(tmp_path, monkeypatch):
    from speechlm.runtime import LLM

    llm = LLM.from_config(tiny_config("llama", max_positions=128), tiny_tokenizer("llama"),
                          seed=0)
    dev, ev = EvalSet("dev", ITEMS[:4]), EvalSet("ev", ITEMS[4:])
    whole = run_method(M.MethodConfig("lm"), dev, [ev], tmp_path / "a", llm=llm,
                       extra={"llm": "tiny"}, progress=False)
    out = tmp_path / "b"
    real = M.score
    calls = []

    def dies_on_the_eval_set(llm, items, *a, **k):
        if items[0].utt == "u4":
            raise KeyboardInterrupt
        calls.append(len(items))
        return real(llm, items, *a, **k)

    monkeypatch.setattr(M, "score", dies_on_the_eval_set)
    with pytest.raises(KeyboardInterrupt):
        run_method(M.MethodConfig("lm"), dev, [ev], out, llm=llm, extra={"llm": "tiny"},
                   progress=False)
    assert not (out / "result.json").exists() and calls == [4]
    monkeypatch.setattr(M, "score", real)
    resumed = run_method(M.MethodConfig("lm"), dev, [ev], out, llm=llm,
                         extra={"llm": "tiny"}, progress=False)
    for s in ("dev", "ev"):
        assert {k: v for k, v in resumed["sets"][s].items() if k != "latency_s"} == \
            {k: v for k, v in whole["sets"][s].items() if k != "latency_s"}
    assert resumed["llm_scale"] == whole["llm_scale"]
    # a scorer or adapter trained again (other training stats) does not reuse the results
    calls.clear()
    monkeypatch.setattr(M, "score", lambda llm, items, *a, **k: (calls.append(len(items)),
                                                                 real(llm, items, *a, **k))[1])
    run_method(M.MethodConfig("lm"), dev, [ev], out, llm=llm,
               extra={"llm": "tiny", "train": {"train_seconds": 1.5}}, progress=False)
    assert sum(calls) == len(ITEMS)
