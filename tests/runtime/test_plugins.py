"""KV cache, MoE executor and energy governor plug points: the reference plug-ins change
nothing, and each hook is called where it should be."""

from __future__ import annotations

import inspect

import pytest
import torch

from speechlm.runtime import SamplingParams
from speechlm.runtime.cache import ContiguousLayer, DynamicKVCache, KVCache
from speechlm.runtime.energy.governor import RecordingGovernor
from speechlm.runtime.moe.experts import (
    LoopExecutor,
    TransformersExecutor,
    apply_moe_executor,
    find_expert_modules,
    remove_moe_executor,
)
from speechlm.testing.llm import tiny_llm, tiny_model

TEXTS = ["one two three four", "the water is good", "five six"]
IDS = torch.tensor([[1, 5, 6, 7, 8, 9, 10], [1, 11, 12, 13, 14, 15, 16]])


# ---- KV cache -----------------------------------------------------------------------------
def test_contiguous_cache_equals_dynamic_cache():
    a, b = tiny_llm("mistral", kv_cache="contiguous"), tiny_llm("mistral", kv_cache="dynamic")
    assert a.score(TEXTS, prefix="count") == pytest.approx(b.score(TEXTS, prefix="count"), abs=1e-6)
    for p in (SamplingParams(max_tokens=20), SamplingParams(max_tokens=8, num_beams=3)):
        ca, cb = a.generate(TEXTS, p), b.generate(TEXTS, p)
        assert [c.token_ids for c in ca] == [c.token_ids for c in cb]
        assert [c.logprob for c in ca] == pytest.approx([c.logprob for c in cb], abs=1e-5)


def _fill(cache, model, ids):
    # transformers >= 5.2x calls it ``cache``; older releases ``past_key_values``
    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    with torch.no_grad():
        model(input_ids=ids, use_cache=True, **{name: cache})
    return cache


@pytest.mark.parametrize("cls", [KVCache, DynamicKVCache])
def test_reorder_cache_matches_recompute(cls):
    model = tiny_model("llama")
    cache = _fill(cls.for_model(model.config), model, IDS)
    beam_idx = torch.tensor([1, 1, 0])
    cache.reorder_cache(beam_idx)
    fresh = _fill(cls.for_model(model.config), model, IDS[beam_idx])
    for la, lb in zip(cache.layers, fresh.layers, strict=True):
        torch.testing.assert_close(la.keys, lb.keys, atol=1e-6, rtol=0)
        torch.testing.assert_close(la.values, lb.values, atol=1e-6, rtol=0)
    assert cache.lengths() == [7, 7]


def test_contiguous_layer_grows_crops_and_counts_bytes():
    layer = ContiguousLayer()
    k = torch.randn(2, 1, 10, 4)  # (B, Hkv, T, D)
    layer.update(k, k)
    assert (layer.length, layer.capacity) == (10, 16)
    k2 = torch.randn(2, 1, 10, 4)
    keys, _ = layer.update(k2, k2)
    assert layer.capacity == 32 and keys.shape == (2, 1, 20, 4)
    torch.testing.assert_close(keys, torch.cat([k, k2], dim=2), atol=0, rtol=0)
    assert (
        layer.nbytes() == 2 * 2 * 20 * 4 * 4 and layer.nbytes(allocated=True) == 2 * 2 * 32 * 4 * 4
    )
    layer.crop(-5)
    assert layer.get_seq_length() == 15 and layer.keys.shape[2] == 15
    with pytest.raises(ValueError, match="negative"):
        layer.crop(3)
    with pytest.raises(ValueError, match="batch size"):
        layer.update(torch.zeros(3, 1, 1, 4), torch.zeros(3, 1, 1, 4))


@pytest.mark.parametrize("cls", [KVCache, DynamicKVCache])
def test_fork_copies_a_batch1_cache(cls):
    model = tiny_model("llama")
    cache = _fill(cls.for_model(model.config), model, IDS[:1])
    forked = cache.fork(3, reserve=4)
    assert forked.lengths() == cache.lengths() and forked.layers[0].keys.shape[0] == 3
    torch.testing.assert_close(forked.layers[1].values[2], cache.layers[1].values[0])
    _fill(forked, model, torch.tensor([[5], [6], [7]]))
    assert cache.lengths() == [7, 7] and forked.lengths() == [8, 8]  # the original is untouched
    with pytest.raises(ValueError, match="batch-1"):
        forked.fork(2)


# ---- MoE executor ---------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["mixtral", "qwen2_moe"])
def test_moe_executors_change_nothing(family):
    plain = tiny_model(family)
    with torch.no_grad():
        expected = plain(input_ids=IDS, use_cache=False).logits
    hooked = tiny_model(family)
    assert apply_moe_executor(hooked, TransformersExecutor()) == 2
    with torch.no_grad():
        assert torch.equal(hooked(input_ids=IDS, use_cache=False).logits, expected)
    apply_moe_executor(hooked, LoopExecutor())
    with torch.no_grad():
        got = hooked(input_ids=IDS, use_cache=False).logits
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    remove_moe_executor(hooked)
    assert "forward" not in vars(find_expert_modules(hooked)[0][2])
    assert set(hooked.state_dict()) == set(plain.state_dict())  # weights untouched


class _Counting(TransformersExecutor):
    name = "counting"

    def __init__(self):
        self.calls = []

    def __call__(self, experts, hidden_states, top_k_index, top_k_weights, *, layer_idx):
        self.calls.append((layer_idx, hidden_states.shape[0], top_k_index.shape[1]))
        return super().__call__(
            experts, hidden_states, top_k_index, top_k_weights, layer_idx=layer_idx
        )


def test_moe_executor_through_the_runtime():
    ex = _Counting()
    llm, ref = tiny_llm("mixtral", moe_executor=ex), tiny_llm("mixtral")
    p = SamplingParams(max_tokens=3)
    assert llm.generate("one two", p)[0].token_ids == ref.generate("one two", p)[0].token_ids
    # prefill of 3 tokens (BOS one two), then 2 decode steps; per layer; top-2 routing
    assert ex.calls == [(0, 3, 2), (1, 3, 2), (0, 1, 2), (1, 1, 2), (0, 1, 2), (1, 1, 2)]
    assert tiny_llm("mixtral", moe_executor="loop").score(TEXTS) == pytest.approx(
        ref.score(TEXTS), abs=1e-5
    )
    assert apply_moe_executor(tiny_model("llama"), LoopExecutor()) == 0  # dense: nothing to hook


# ---- energy governor -------------------------------------------------------------------------
def test_governor_is_called_around_each_step_and_changes_nothing():
    gov = RecordingGovernor()
    llm, ref = tiny_llm("llama", energy_governor=gov), tiny_llm("llama", energy_governor="none")
    p = SamplingParams(max_tokens=5)
    a, b = llm.generate(TEXTS[:2], p), ref.generate(TEXTS[:2], p)
    assert [c.token_ids for c in a] == [c.token_ids for c in b]
    assert [c.logprob for c in a] == [c.logprob for c in b]
    phases = [s[0] for s in gov.steps]
    assert phases == ["prefill"] + ["decode"] * 4
    assert gov.steps[0][1:3] == (2, 5)  # batch 2, 5 prompt columns (left-padded)
    assert [s[3] for s in gov.steps] == [0, 5, 6, 7, 8]  # context grows by one per step
    assert all(s[4] > 0 for s in gov.steps)


def test_unknown_plugin_names_are_value_errors():
    with pytest.raises(ValueError, match="unknown energy governor 'dvfs'"):
        tiny_llm("llama", energy_governor="dvfs")
    with pytest.raises(ValueError, match="unknown moe executor"):
        tiny_llm("llama", moe_executor="offload")
    with pytest.raises(ValueError, match="kv_cache"):
        tiny_llm("llama", kv_cache="paged")
