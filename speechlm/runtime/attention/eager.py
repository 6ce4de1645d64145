"""Plain-math attention (softmax(QK^T * s + mask) V), kept next to SDPA as the readable spec.

Like nanoGPT's manual path: slow, obvious, float32 softmax. Sparse backends can compare
their ``keep all blocks`` setting against it and against ``sdpa``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from speechlm.runtime.attention.base import AttentionBackend


class EagerBackend(AttentionBackend):
    """Explicit matmul-softmax-matmul attention with an additive float mask."""

    name: ClassVar[str] = "eager"
    mask: ClassVar[str] = "eager"
    supports_output_attentions: ClassVar[bool] = True

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
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n_rep = query.shape[1] // key.shape[1]  # GQA: each KV head serves n_rep query heads
        key = key.repeat_interleave(n_rep, dim=1)  # (B, H, Tk, D)
        value = value.repeat_interleave(n_rep, dim=1)
        scale = query.shape[-1] ** -0.5 if scaling is None else scaling
        scores = torch.matmul(query, key.transpose(2, 3)) * scale  # (B, H, Tq, Tk)
        if attention_mask is not None:
            scores = scores + attention_mask[..., : key.shape[-2]]
        weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        if dropout and module.training:
            weights = torch.nn.functional.dropout(weights, p=dropout)
        out = torch.matmul(weights, value)  # (B, H, Tq, D)
        return out.transpose(1, 2).contiguous(), weights  # (B, Tq, H, D)
