"""Method switch on a tiny seeded LLM: shared-prefix scoring, context fitting, tuning, guard."""
from __future__ import annotations

import pytest

from speechlm.llm.second_pass import methods as M
from speechlm.llm.second_pass.evaluate import one_best, oracle, wer
from speechlm.llm.second_pass.nbest import NbestItem, Note
from speechlm.llm.second_pass.prompt import PromptBuilder
from speechlm.testing.llm import tiny_config, tiny_tokenizer


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def llm():
    from speechlm.runtime import LLM

    return LLM.from_config(tiny_config("llama", max_positions=128), tiny_tokenizer("llama"),
                           seed=0)


ITEMS = [NbestItem("a", ("the man said one", "the man said won", "a man said one"),
                   "the man said one"),
         NbestItem("b", ("he was here", "he is here"), "he is here"),
         NbestItem("c", ("go home now", "go home"), None)]


def test_prompt_scoring_encodes_the_prefix_once_per_utterance(llm):
    builder = PromptBuilder(llm.tokenizer, template=False)
    before = len(llm.metrics.records)
    got = M.score(llm, ITEMS[:1], M.MethodConfig("prompt"), builder=builder)
    recs = llm.metrics.records[before:]
    prefix = builder.render(builder.rescore())
    n_prefix = len(llm.tokenizer(prefix)["input_ids"])
    n_hyps = sum(len(llm.tokenizer(" " + h, add_special_tokens=False)["input_ids"])
                 for h in ITEMS[0].hyps)
    assert len(recs) == 1 and recs[0].prompt_tokens == n_prefix + n_hyps
    want = llm.score([" " + h for h in ITEMS[0].hyps], prefix=prefix, append_eos=True)
    assert got["a"].scores == pytest.approx(want, abs=1e-4)


def test_lm_norm_divides_by_the_token_count(llm):
    s = M.score(llm, ITEMS[:1], M.MethodConfig("lm"))["a"].scores
    n = M.score(llm, ITEMS[:1], M.MethodConfig("lm_norm"))["a"].scores
    ntok = [len(llm.tokenizer(h, add_special_tokens=False)["input_ids"]) + 1
            for h in ITEMS[0].hyps]
    assert n == pytest.approx([v / k for v, k in zip(s, ntok, strict=True)], abs=1e-5)


def test_tuned_scale_is_never_worse_than_the_one_best_on_dev(llm):
    scores = M.score(llm, ITEMS, M.MethodConfig("lm"))
    assert M.choose(ITEMS, scores, 0.0) == one_best(ITEMS)
    scale, table = M.tune_scale(ITEMS, scores)
    assert table[scale] <= wer(ITEMS, one_best(ITEMS)) and 0.0 in table


def test_long_ger_prompt_cuts_the_nbest_not_the_instructions(llm):
    long = " ".join(["one two three four five six seven eight nine ten"] * 2)
    item = NbestItem("long", tuple(f"{long} {w}" for w in ("a", "an", "the", "of", "to")),
                     long)
    notes: list[Note] = []
    builder = PromptBuilder(llm.tokenizer, template=False)
    prefix = M.build_prefix(llm, builder, M.MethodConfig("ger-select"), item, [], notes)
    assert prefix is not None and "Write the correct transcript" in prefix
    kept = prefix.count(long)
    assert 1 <= kept < 5
    assert any(n.utt == "long" and f"cut to {kept} hypotheses" in n.message for n in notes)


def test_an_nbest_that_cannot_fit_falls_back_to_the_one_best(llm):
    huge = " ".join(["one two three four five six seven eight nine ten"] * 12)
    item = NbestItem("huge", (huge, huge + " one"), huge)
    notes: list[Note] = []
    got = M.score(llm, [item], M.MethodConfig("ger-select"), notes=notes)
    assert got["huge"].failed and M.choose([item], got, 5.0)["huge"] == huge
    assert any(n.utt == "huge" and n.kind == "context" for n in notes)


def test_free_ger_runs_and_the_guard_accounts_for_every_utterance(llm):
    corr = M.correct(llm, ITEMS, M.MethodConfig("ger-free", max_new_tokens=6),
                     builder=PromptBuilder(llm.tokenizer, template=False))
    texts, counts = M.guard(ITEMS, corr, 0.0)
    assert sum(counts.values()) == len(ITEMS)
    for it in ITEMS:  # threshold 0 keeps only outputs that are one of the hypotheses
        assert texts[it.utt] in it.hyps


def test_guard_threshold_is_tuned_on_dev():
    items = ITEMS[:2]
    corr = {"a": M.Correction("the man said one", 0.0),        # = hyp 1, fine
            "b": M.Correction("he is here", 0.0)}               # = hyp 2: fixes the 1-best
    t, table = M.tune_threshold(items, corr)
    assert table[t] == 0.0 and wer(items, oracle(items)) == 0.0
    far = {"a": M.Correction("completely different words here", 0.0), "b": M.Correction(None, 0)}
    texts, counts = M.guard(items, far, 0.5)
    assert texts == one_best(items) and counts == {"failed": 1, "fallback": 1, "kept": 0}


def test_normalize_output_keeps_the_nbest_form():
    assert M.normalize_output('1. "He said, Hello!" ...\nsecond line') == "he said hello"
    assert M.normalize_output("  don't  STOP ") == "don't stop"


def test_method_config_refuses_unknown_values():
    with pytest.raises(ValueError, match="method must be one of"):
        M.MethodConfig("beam")
    with pytest.raises(ValueError, match="demos must be"):
        M.MethodConfig("prompt", shots=2, demos="nearest")
    assert M.MethodConfig("tap", shots=3, demos="similar").key == "tap_3shot_similar"


def test_python_api_runs_the_same_switch(llm):
    import speechlm

    got = speechlm.rescore({"a": list(ITEMS[0].hyps)}, "lm", llm=llm, llm_scale=0.7)
    want = M.choose(ITEMS[:1], M.score(llm, ITEMS[:1], M.MethodConfig("lm")), 0.7)
    assert got == want
    assert speechlm.rescore(["x y", "x z"], "ger-free", llm=llm, threshold=0.0)["utt"] in (
        "x y", "x z")


def test_task_activating_prompt_puts_the_models_answers_before_the_task(llm):
    from speechlm.llm.second_pass.prompt import ACTIVATION_QUESTIONS, activation_turns

    turns = activation_turns(llm, max_tokens=4)
    assert [t["role"] for t in turns] == ["user", "assistant"] * len(ACTIVATION_QUESTIONS)
    assert [t["content"] for t in turns[::2]] == list(ACTIVATION_QUESTIONS)
    builder = PromptBuilder(llm.tokenizer, activation=turns)
    chat = builder.rescore(["he is here"], tap=True)
    assert chat[: len(turns)] == turns and "he is here" in chat[-1]["content"]
    assert builder.rescore(["he is here"])[0]["role"] == "user"  # no activation without tap


def test_tuned_guard_is_never_worse_than_the_one_best_on_dev():
    items = ITEMS[:2]
    # outputs that are hypotheses, but the wrong ones: any keeping threshold hurts
    corr = {"a": M.Correction("the man said won", 0.0), "b": M.Correction("he was here", 0.0)}
    t, table = M.tune_threshold(items, corr)
    assert t == -1.0 and table[t] == wer(items, one_best(items)) < table[0.0]
