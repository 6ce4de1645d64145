"""Scoring: equal to a plain transformers forward per family; batching, prefix sharing,
per-token values, EOS, and hidden states."""

from __future__ import annotations

import pytest
import torch

from speechlm.runtime import ScoreResult
from speechlm.runtime.generate import FOLD_CONTEXT_TOKENS
from speechlm.testing.llm import FAMILIES, reference_logprobs, tiny_llm, tiny_model

TEXTS = ["one two three four", "the water is good", "five", "ask my mother , then go home ."]
PREFIX = "count : zero"
ALL_FAMILIES = sorted(FAMILIES)


def _expected(llm, ref, text, prefix=None, eos=False):
    tok = llm.tokenizer
    ids = tok(text, add_special_tokens=False)["input_ids"]
    if prefix is not None:
        ctx = tok(prefix)["input_ids"]
    elif tok.bos_token_id is not None:
        ctx = [tok.bos_token_id]
    else:  # no BOS: the first token is context only
        ctx, ids = ids[:1], ids[1:]
    if eos:
        ids = ids + [llm.eos_ids[0]]
    return reference_logprobs(ref, ctx, ids) if ids else []


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_scores_equal_plain_forward(family):
    llm = tiny_llm(family)
    ref = tiny_model(family)
    with_prefix = llm.score(TEXTS, prefix=PREFIX, batch_size=3)
    without = llm.score(TEXTS, batch_size=3)
    for text, a, b in zip(TEXTS, with_prefix, without, strict=True):
        assert a == pytest.approx(sum(_expected(llm, ref, text, PREFIX)), abs=1e-4)
        assert b == pytest.approx(sum(_expected(llm, ref, text)), abs=1e-4)
    assert all(s < 0 for s in with_prefix)


def test_gpt2_conditions_on_bos_and_qwen2_skips_first_token():
    gpt2, qwen = tiny_llm("gpt2"), tiny_llm("qwen2")
    r = gpt2.score(["one two"], per_token=True)[0]
    assert r.tokens == ["one", "two"]  # BOS (= EOS) not added by the tokenizer, still used
    r = qwen.score(["one two"], per_token=True)[0]
    assert r.tokens == ["two"]  # no BOS at all: "one" is context only
    assert qwen.score(["five"]) == [0.0]


def test_per_token_and_append_eos():
    llm, ref = tiny_llm("llama"), tiny_model("llama")
    res = llm.score(TEXTS[:2], prefix=PREFIX, per_token=True, append_eos=True)
    assert all(isinstance(r, ScoreResult) for r in res)
    for text, r in zip(TEXTS[:2], res, strict=True):
        expected = _expected(llm, ref, text, PREFIX, eos=True)
        assert r.tokens == text.split() + ["</s>"]
        assert r.token_logprobs == pytest.approx(expected, abs=1e-4)
        assert r.total == pytest.approx(sum(r.token_logprobs), abs=1e-9)
    plain = llm.score(TEXTS[:2], prefix=PREFIX)
    assert [r.total for r in res] == pytest.approx(
        [p + r.token_logprobs[-1] for p, r in zip(plain, res, strict=True)], abs=1e-5
    )


@pytest.mark.parametrize("kv_cache", ["contiguous", "dynamic"])
def test_batched_equals_unbatched(kv_cache):
    llm = tiny_llm("mistral", kv_cache=kv_cache)
    batched = llm.score(TEXTS, prefix=PREFIX, batch_size=4)
    single = [llm.score([t], prefix=PREFIX, batch_size=1)[0] for t in TEXTS]
    assert batched == pytest.approx(single, abs=1e-5)


def test_shared_prefix_equals_unshared():
    """The prefix runs once and its cache is forked; scoring the same ids in one pass
    (prefix tokens inside each sequence, no cache reuse) must agree."""
    from speechlm.runtime.engine import CallStats
    from speechlm.runtime.generate import score_sequences

    llm = tiny_llm("qwen2")
    tok = llm.tokenizer
    shared = llm.score(TEXTS, prefix=PREFIX)
    ctx = tok(PREFIX)["input_ids"]
    seqs = [ctx + tok(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
    stats = CallStats()
    # empty shared context: every sequence carries the prefix itself, nothing is reused
    vals = score_sequences(llm.engine, [], seqs, eos_id=None, batch_size=2, pad_id=0, stats=stats)
    unshared = [sum(v[len(ctx) - 1 :]) for v in vals]
    assert shared == pytest.approx(unshared, abs=1e-5)


def test_prefix_runs_once_per_call():
    from speechlm.runtime.energy.governor import RecordingGovernor

    gov = RecordingGovernor()
    llm = tiny_llm("llama", energy_governor=gov)
    prefix = PREFIX + " one two three"  # 7 tokens x 3 more rows: over FOLD_CONTEXT_TOKENS
    texts = [f"{a} {b}" for a in ("one", "two", "three") for b in ("five", "six")]
    llm.score(texts * 2, prefix=prefix, batch_size=4)
    phases = [s[:3] for s in gov.steps]
    n_prefix = len(llm.tokenizer(prefix)["input_ids"])
    assert n_prefix * 3 > FOLD_CONTEXT_TOKENS
    assert phases[0] == ("prefill", 1, n_prefix)  # the prompt, once, at batch 1
    # then the 12 texts in one batch of 3 rows: "one five" and "one six" need only "one"
    # run after the prompt, the repeats nothing more
    assert [p[1] for p in phases[1:]] == [3]


def test_shared_rows_run_each_shared_start_once():
    from speechlm.runtime.generate import shared_rows

    seqs = [[1, 2, 3], [1, 2, 4], [1, 2], [5], [1, 2, 3], [1, 6, 7, 8]]
    spans = [len(s) - 1 for s in seqs]  # after a context, without EOS
    rows, members = shared_rows(seqs, [n for n in spans], spans)
    assert rows == [[1, 6, 7], [1, 2]]  # longest first; [5] is scored from the context
    assert members == [[5, 2], [0, 1, 4]]  # [1, 2] runs only its first token
    # with EOS every token is run: [1, 2, 3] and [1, 2, 4] differ
    spans = [len(s) for s in seqs]
    rows, members = shared_rows(seqs, spans, spans)
    assert rows == [[1, 6, 7, 8], [1, 2, 3], [1, 2, 4], [5]]
    assert members == [[5], [0, 4, 2], [1], [3]]


@pytest.mark.parametrize("append_eos", [False, True])
def test_texts_sharing_a_start_equal_scored_alone(append_eos):
    llm = tiny_llm("llama")
    texts = ["one two three", "one two", "one two four", "one", "one two three", "five six"]
    together = llm.score(texts, prefix=PREFIX, per_token=True, append_eos=append_eos)
    for text, r in zip(texts, together, strict=True):
        alone = llm.score([text], prefix=PREFIX, per_token=True, append_eos=append_eos)[0]
        assert r.tokens == alone.tokens
        assert r.token_logprobs == pytest.approx(alone.token_logprobs, abs=1e-5)


@pytest.mark.parametrize("prefix", [None, PREFIX])
@pytest.mark.parametrize("append_eos", [False, True])
def test_short_context_folded_into_rows(monkeypatch, prefix, append_eos):
    """BOS alone or a short prompt is prepended to every row (no batch-1 prefill: one pass
    over the weights saved); the scores equal those of the prefilled, forked cache."""
    from speechlm.runtime import generate
    from speechlm.runtime.energy.governor import RecordingGovernor

    gov = RecordingGovernor()
    llm = tiny_llm("llama", energy_governor=gov)
    folded = llm.score(TEXTS, prefix=prefix, per_token=True, append_eos=append_eos)
    # one forward, nothing at batch 1; without EOS "five" is the context, which the other
    # rows hold
    rows = 4 if append_eos else 3
    assert [s[1] for s in gov.steps] == [rows]
    monkeypatch.setattr(generate, "FOLD_CONTEXT_TOKENS", -1)  # force the prefill
    gov.steps.clear()
    cached = llm.score(TEXTS, prefix=prefix, per_token=True, append_eos=append_eos)
    assert [s[1] for s in gov.steps] == [1, rows]
    for a, b in zip(folded, cached, strict=True):
        assert a.tokens == b.tokens
        assert a.token_logprobs == pytest.approx(b.token_logprobs, abs=1e-5)


def test_hidden_states_match_transformers():
    llm, ref = tiny_llm("llama"), tiny_model("llama")
    texts = ["one two three", "good water"]
    for layer in (0, 1, 2, -1):
        states = llm.hidden_states(texts, layer)
        for text, h in zip(texts, states, strict=True):
            ids = torch.tensor([llm.tokenizer(text)["input_ids"]])
            with torch.no_grad():
                expected = ref(input_ids=ids, output_hidden_states=True).hidden_states[layer][0]
            assert h.shape == expected.shape
            torch.testing.assert_close(h, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="layer must be in"):
        llm.hidden_states(texts, 3)
