"""LLM N-best rescoring: scores through the runtime, the sweep, the cache and the CLI."""
import json

import pytest

from speechlm.bin import rescore as rescore_cli
from speechlm.core.hypothesis import Hypothesis
from speechlm.llm.rescore import (
    RescoreConfig,
    llm_scores,
    pick_best,
    read_nbest_jsonl,
    setting_key,
    sweep,
)
from speechlm.testing.llm import save_tiny_model, tiny_llm, tiny_words

WORDS = tiny_words()


class Counting:
    """Wraps an LLM and counts score calls (the cache must avoid them)."""

    def __init__(self, llm):
        self.llm, self.calls = llm, 0

    def score(self, *args, **kwargs):
        self.calls += 1
        return self.llm.score(*args, **kwargs)


@pytest.fixture(scope="module")
def llm():
    return tiny_llm("llama", seed=0)


def hyps_of(pairs):
    return [Hypothesis(t, s) for t, s in pairs]


def make_nbest():
    a, b, c, d = WORDS[10:14]
    return {"u1": hyps_of([(f"{a} {b}", -1.0), (f"{a} {c}", -1.1), ("", -5.0)]),
            "u2": hyps_of([(f"{c} {d} {a}", -2.0), (f"{d}", -2.5)])}


def test_scores_are_the_runtimes(llm):
    nbest = make_nbest()
    scores = llm_scores(llm, nbest, progress=False)
    for utt, hyps in nbest.items():
        texts = [h.text for h in hyps if h.text]
        direct = llm.score(texts, append_eos=True)
        got = [s for h, s in zip(hyps, scores[utt], strict=True) if h.text]
        assert got == pytest.approx(direct, abs=1e-5)
    # the empty hypothesis never beats a scored one on the LLM term
    assert scores["u1"][2] == min(scores["u1"][:2])


def test_prompt_changes_scores(llm):
    nbest = make_nbest()
    plain = llm_scores(llm, nbest, progress=False)
    prompted = llm_scores(llm, nbest, RescoreConfig(prompt=" ".join(WORDS[20:24])),
                          progress=False)
    assert plain["u2"] != pytest.approx(prompted["u2"], abs=1e-6)


def test_pick_best_and_sweep():
    nbest = {"u": hyps_of([("a b", -1.0), ("a b c d", -1.5)])}
    lm = {"u": [-4.0, -3.0]}
    assert pick_best(nbest, lm, llm_scale=0.0, length_bonus=0.0) == {"u": "a b"}
    assert pick_best(nbest, lm, llm_scale=1.0, length_bonus=0.0) == {"u": "a b c d"}
    assert pick_best(nbest, lm, llm_scale=0.0, length_bonus=0.3) == {"u": "a b c d"}
    results = sweep(nbest, lm, [0.0, 1.0], [0.0])
    assert list(results) == [setting_key(0.0, 0.0), setting_key(1.0, 0.0)]
    assert results["llm_scale_1_bonus_0"]["u"] == "a b c d"


def test_cache_skips_finished_utterances(llm, tmp_path):
    nbest = make_nbest()
    counting = Counting(llm)
    first = llm_scores(counting, nbest, cache=tmp_path / "c.jsonl", progress=False)
    calls = counting.calls
    again = llm_scores(counting, nbest, cache=tmp_path / "c.jsonl", progress=False)
    assert counting.calls == calls and again == first
    # another prompt invalidates the cache
    llm_scores(counting, nbest, RescoreConfig(prompt=WORDS[5]), cache=tmp_path / "c.jsonl",
               progress=False)
    assert counting.calls > calls


def test_cli_sweeps_and_reports(tmp_path):
    model = save_tiny_model(tmp_path / "lm", "llama", seed=1)
    dec = tmp_path / "dec"
    dec.mkdir()
    nbest = make_nbest()
    (dec / "nbest.jsonl").write_text("".join(
        json.dumps({"utt": u, "hyps": [h.to_json() for h in hyps]}) + "\n"
        for u, hyps in nbest.items()))
    ref = tmp_path / "ref"
    ref.write_text(f"u1 {WORDS[10]} {WORDS[12]}\nu2 {WORDS[12]} {WORDS[13]} {WORDS[10]}\n")
    out = tmp_path / "out"
    rc = rescore_cli.main(["--decode-dir", str(dec), "--llm", str(model), "--out", str(out),
                           "--llm-scales", "0 0.5 2", "--length-bonuses", "0 1",
                           "--ref", str(ref)])
    assert rc == 0
    assert len(list(out.glob("hyp-llm_scale_*_bonus_*.txt"))) == 6
    summary = (out / "wer-summary.txt").read_text().splitlines()
    assert summary[0] == "settings\tWER" and len(summary) == 7
    best = json.loads((out / "best.json").read_text())
    assert best["wer"] <= best["first_pass_wer"]
    assert (out / "text").read_text() == (out / f"hyp-{best['setting']}.txt").read_text()
    assert read_nbest_jsonl(dec / "nbest.jsonl", max_hyps=1)["u1"] == [nbest["u1"][0]]


def test_cli_errors(tmp_path, capsys):
    assert rescore_cli.main(["--decode-dir", str(tmp_path), "--llm", "x", "--out",
                             str(tmp_path / "o")]) == 1
    assert "nbest.jsonl" in capsys.readouterr().err
    (tmp_path / "nbest.jsonl").write_text('{"utt": "u", "hyps": [{"text": "a"}]}\n')
    assert rescore_cli.main(["--decode-dir", str(tmp_path), "--llm", "x", "--out",
                             str(tmp_path / "o")]) == 1
    assert "nbest.jsonl:1" in capsys.readouterr().err
