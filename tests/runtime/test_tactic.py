"""``tactic`` and ``quest`` backends through the runtime's attention plug point.

Set to keep everything (``p=1``, ``top_k`` >= pages) they must match ``sdpa``; set sparse
they must match their own kernels' reference on the same cache; the index is rebuilt on
refresh, new caches and reordered keys; instrumentation records what the issue asks.
"""

from __future__ import annotations

import pytest
import torch

from speechlm.runtime import SamplingParams
from speechlm.runtime.attention import ATTENTION_BACKENDS, build_attention
from speechlm.runtime.attention.quest import QuestBackend
from speechlm.runtime.attention.tactic import TacticBackend
from speechlm.testing.llm import tiny_config, tiny_llm

PROMPTS = ["one two three four five six seven eight nine ten the water is", "the"]  # ragged
PARAMS = SamplingParams(max_tokens=12)
LOGPROB_ATOL = 1e-4  # float32, sparse path vs SDPA over the same tokens

SMALL = dict(min_tokens=4, refresh=6)  # index from the first decode step, rebuilt often


@pytest.fixture(scope="module")
def reference():
    llm = tiny_llm("llama")
    return llm.generate(PROMPTS, PARAMS)


def test_registered_lazily():
    assert ATTENTION_BACKENDS.path("tactic") == "speechlm.runtime.attention.tactic:TacticBackend"
    assert ATTENTION_BACKENDS.path("quest") == "speechlm.runtime.attention.quest:QuestBackend"
    assert isinstance(build_attention("tactic", {"p": 0.75}), TacticBackend)


@pytest.mark.parametrize(
    "name,conf",
    [
        pytest.param("tactic", dict(p=1.0, cluster_size=4, **SMALL), id="tactic-keep-all"),
        pytest.param("tactic", dict(p=1.0, mode="oracle", **SMALL), id="oracle-keep-all"),
        pytest.param("quest", dict(page_size=4, top_k=64, **SMALL), id="quest-all-pages"),
    ],
)
def test_keep_all_matches_sdpa(reference, name, conf):
    llm = tiny_llm("llama", attention=name, attention_conf=conf)
    out = llm.generate(PROMPTS, PARAMS)
    for got, want in zip(out, reference, strict=True):
        assert got.token_ids == want.token_ids
    assert llm.engine.attention.index_builds >= 4  # the sparse path did run (and refresh)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_sparse_scores_use_the_sparse_path(family):
    """A sparse setting changes decode-step results, and a record shows why."""
    dense = tiny_llm(family)
    llm = tiny_llm(
        family, attention="tactic", attention_conf=dict(p=0.5, cluster_size=4, record=True, **SMALL)
    )
    a = llm.generate(PROMPTS[:1], PARAMS)[0]
    b = dense.generate(PROMPTS[:1], PARAMS)[0]
    recs = llm.engine.attention.records
    assert len(recs) == 2 * (len(a.token_ids) - 1)  # 2 layers x decode steps
    for rec in recs:
        assert (rec["budget"] <= rec["union"]).all()  # union over the group >= own budget
        assert ((rec["mass"] > 0) & (rec["mass"] <= 1 + 1e-6)).all()
        assert (rec["rel_error"] >= 0).all()
    assert any((rec["mass"] < 0.999).any() for rec in recs)  # something was dropped
    assert a.token_ids[:1] == b.token_ids[:1]  # prefill is dense: first token identical


@pytest.mark.parametrize("index_method", ["lloyd", "two_level"])
def test_runtime_step_equals_kernel_reference(index_method):
    """The backend's decode output is exactly the kernel reference on the cache it saw."""
    from speechlm_kernels.tactic import build_index, tactic_decode

    seen = {}

    class Capture(TacticBackend):
        def forward(self, module, query, key, value, attention_mask, **kw):
            out, w = super().forward(module, query, key, value, attention_mask, **kw)
            if query.shape[2] == 1 and kw["layer_idx"] == 1:
                seen["args"] = (query[:, :, 0].clone(), key.clone(), value.clone(), out.clone())
            return out, w

    backend = Capture(p=0.6, cluster_size=4, min_tokens=4, refresh=1000, index_method=index_method)
    llm = tiny_llm("llama", attention=backend)
    llm.generate(PROMPTS[0], SamplingParams(max_tokens=2))  # one decode step
    q, k, v, out = seen["args"]
    index = build_index(k[:, :, :-1], cluster_size=4, method=index_method)
    want, _ = tactic_decode(q, k, v, index, p=0.6, impl="ref")
    torch.testing.assert_close(out[:, 0], want, atol=1e-6, rtol=1e-6)


def test_index_refresh_and_invalidation():
    backend = TacticBackend(p=0.9, cluster_size=4, min_tokens=4, refresh=5)
    llm = tiny_llm("llama", attention=backend)
    llm.generate(PROMPTS[0], SamplingParams(max_tokens=12))  # 11 decode steps
    # per layer: built at step 1, then each time 5 more tokens follow the index
    assert backend.index_builds == 2 * 3
    llm.generate(PROMPTS[0], SamplingParams(max_tokens=2))  # a new cache: rebuilt
    assert backend.index_builds == 2 * 4
    # beam search generation runs through the same path
    assert llm.generate(PROMPTS[0], SamplingParams(max_tokens=6, num_beams=3))[0].token_ids


def test_reordered_keys_rebuild_the_index():
    """reorder_cache (beam search) swaps rows in place: the probe check must notice."""

    class Layer:  # stands in for a cache layer (the index is tied to its identity)
        pass

    backend, layer = TacticBackend(cluster_size=4, min_tokens=4), Layer()
    keys = torch.randn(2, 1, 30, 8)
    keys[1] += 3.0  # rows differ everywhere
    backend._index_for(0, layer, keys, None)
    backend._index_for(0, layer, keys, None)
    assert backend.index_builds == 1
    backend._index_for(0, layer, keys.flip(0), None)  # rows reordered
    assert backend.index_builds == 2
    backend._index_for(0, Layer(), keys.flip(0), None)  # another cache layer
    assert backend.index_builds == 3


def test_quest_budget_is_fixed():
    backend = QuestBackend(page_size=4, top_k=2, min_tokens=4, refresh=1000, record=True)
    llm = tiny_llm("llama", attention=backend)
    llm.generate(PROMPTS[0], SamplingParams(max_tokens=6))
    for rec in backend.records:
        recent = rec["context"] - backend._layers[rec["layer"]].n_tokens
        assert (rec["budget"] <= 2 * 4 + recent).all()
        assert (rec["budget"] >= recent).all()


def test_conf_errors_and_refusals():
    with pytest.raises(ValueError, match="p must be in"):
        TacticBackend(p=0.0)
    with pytest.raises(ValueError, match="mode must be"):
        TacticBackend(mode="topk")
    with pytest.raises(ValueError, match="index_method must be"):
        TacticBackend(index_method="faiss")
    with pytest.raises(ValueError, match="top_k must be"):
        QuestBackend(top_k=0)
    reasons = TacticBackend().validate(tiny_config("mistral"))
    assert any("sliding-window" in r for r in reasons)
    assert TacticBackend().validate(tiny_config("llama")) == []


def test_scoring_stays_dense():
    """Multi-token steps (prompt, scored continuations after a cached prefix) are dense."""
    ref = tiny_llm("llama").score(["one two three", "the water is"], prefix="count :")
    llm = tiny_llm("llama", attention="tactic", attention_conf=dict(p=0.5, **SMALL))
    got = llm.score(["one two three", "the water is"], prefix="count :")
    assert got == pytest.approx(ref, abs=LOGPROB_ATOL)
    assert llm.engine.attention.index_builds == 0
