"""Attention plug point: the reference backends change nothing; a backend sees its layer
index and cache layer; validation and registration errors are clear."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch

from speechlm.runtime import SamplingParams
from speechlm.runtime.attention import ATTENTION_BACKENDS, build_attention
from speechlm.runtime.attention.base import AttentionBackend
from speechlm.runtime.attention.sdpa import SdpaBackend
from speechlm.testing.llm import tiny_llm, tiny_model

IDS = torch.tensor([[1, 5, 6, 7, 8, 9, 10], [0, 0, 1, 11, 12, 13, 14]])  # 2nd row left-padded
MASK = (IDS != 0).long()


def _logits(model):
    with torch.no_grad():
        return model(input_ids=IDS, attention_mask=MASK, use_cache=False).logits


@pytest.mark.parametrize("family", ["llama", "gpt2", "mixtral"])
def test_sdpa_backend_is_bit_equal_to_transformers_sdpa(family):
    plain = tiny_model(family)
    llm = tiny_llm(family, attention="sdpa")
    assert llm.model.config._attn_implementation.startswith("speechlm_sdpa_")
    assert torch.equal(_logits(llm.model), _logits(plain))


def test_eager_backend_matches_sdpa():
    plain = tiny_model("qwen2")
    llm = tiny_llm("qwen2", attention="eager")
    valid = MASK.bool()  # padded query rows attend to nothing: their output is arbitrary
    torch.testing.assert_close(
        _logits(llm.model)[valid], _logits(plain)[valid], atol=1e-5, rtol=1e-5
    )
    # and through the runtime (cache, decode steps)
    ref = tiny_llm("qwen2")
    p = SamplingParams(max_tokens=6)
    assert (
        llm.generate(["one two", "the water is"], p)[0].token_ids
        == ref.generate(["one two", "the water is"], p)[0].token_ids
    )
    assert llm.score(["one two"], prefix="count") == pytest.approx(
        ref.score(["one two"], prefix="count"), abs=1e-5
    )


class _Spy(SdpaBackend):
    """SDPA, but records (layer_idx, cache length seen, q length) on every call."""

    name: ClassVar[str] = "spy"

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, module, query, key, value, attention_mask, *, layer_idx, cache_layer, **kw):
        seen = None if cache_layer is None else cache_layer.get_seq_length()
        self.calls.append((layer_idx, seen, query.shape[2], key.shape[2]))
        return super().forward(
            module,
            query,
            key,
            value,
            attention_mask,
            layer_idx=layer_idx,
            cache_layer=cache_layer,
            **kw,
        )


def test_backend_sees_layer_index_and_cache_layer():
    spy = _Spy()
    llm = tiny_llm("llama", attention=spy)
    llm.generate("one two three", SamplingParams(max_tokens=3))
    # prefill (4 tokens incl. BOS) then 2 decode steps, 2 layers each
    assert [c[0] for c in spy.calls] == [0, 1] * 3
    assert [c[2] for c in spy.calls] == [4, 4, 1, 1, 1, 1]
    # the cache layer is already updated with this step's keys when attention runs
    assert [c[1] for c in spy.calls] == [4, 4, 5, 5, 6, 6]
    assert [c[3] for c in spy.calls] == [4, 4, 5, 5, 6, 6]
    assert spy.cache_layer(0) is None  # unbound outside a forward pass


def test_backend_must_declare_its_mask():
    with pytest.raises(TypeError, match="mask must be one of"):

        class _NoMask(AttentionBackend):  # noqa: F841
            name = "nomask"

            def forward(self, *a, **k):
                raise NotImplementedError


class _Refuses(SdpaBackend):
    name: ClassVar[str] = "refuses"

    def validate(self, config):
        return [*super().validate(config), "needs head_dim 128"]


def test_validate_reasons_refuse_install():
    with pytest.raises(ValueError, match="needs head_dim 128"):
        tiny_llm("llama", attention=_Refuses())


def test_registry_is_lazy_and_names_choices():
    assert ATTENTION_BACKENDS.path("sdpa") == "speechlm.runtime.attention.sdpa:SdpaBackend"
    with pytest.raises(ValueError, match="registered: eager, quest, sdpa, tactic"):
        build_attention("no_such_backend")
    with pytest.raises(ValueError, match="already registered"):
        ATTENTION_BACKENDS.register("sdpa", "somewhere:Else")
