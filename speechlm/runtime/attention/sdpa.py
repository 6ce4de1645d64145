"""Reference backend: transformers' own SDPA attention, reached through our plug point.

Installing it must change nothing (bit-equal to ``attn_implementation="sdpa"``); that is
what the plug-point test checks, so a later backend can be compared against it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from speechlm.runtime.attention.base import AttentionBackend


class SdpaBackend(AttentionBackend):
    """``torch.nn.functional.scaled_dot_product_attention`` via transformers' wrapper."""

    name: ClassVar[str] = "sdpa"
    mask: ClassVar[str] = "sdpa"

    def forward(
        self,
        module,
        query,
        key,
        value,
        attention_mask,
        *,
        layer_idx: int,
        cache_layer: Any,
        scaling: float | None = None,
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, None]:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
