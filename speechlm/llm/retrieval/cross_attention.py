"""Gated cross-attention from an LLM's hidden states to a memory of retrieved items.

A :class:`GatedCrossAttention` block (Flamingo's "gated xattn-dense", RETRO's chunked
cross-attention without the chunking) adds ``tanh(gate) * attn(norm(x), memory)`` to a
decoder layer's output; the gate starts at 0, so at initialisation the model is exactly the
plain LLM (logits bit-equal) and training opens the gate as the memory proves useful.

:class:`CrossAttentionAdapters` attaches such blocks after chosen decoder layers of a
transformers causal LM (Llama family: ``model.model.layers``) with forward hooks, so no
model code is forked and the runtime (``speechlm.runtime.LLM``) drives the model unchanged.
The memory is set per batch with :meth:`CrossAttentionAdapters.memory`; outside that
context the hooks do nothing. Each step, prefill or cached decode, attends to the whole
memory with its own query, so the KV cache needs no change: memory keys are not cached
(they are a few dozen vectors, recomputed per step).

Axes: hidden states ``(B, T, D)``, memory ``(B, M, D_mem)``, memory mask ``(B, M)``
(True = a real item, False = padding). A memory of batch 1 is shared by every row.

>>> import torch
>>> block = GatedCrossAttention(dim=8, mem_dim=4, heads=2)
>>> x = torch.randn(1, 3, 8)
>>> torch.equal(block(x, torch.randn(1, 5, 4)), x)   # gate 0: the identity
True
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class CrossAttentionConfig:
    """Args:
        layers: decoder layers after which a block is attached (negative: from the end).
        heads: attention heads (0: the LLM's ``num_attention_heads``).
        mem_dim: width of the memory vectors (0: the LLM's hidden size).
        ff_mult: a gated feed-forward after the attention (Flamingo), hidden ``ff_mult * D``;
            0 = attention only.
    """

    layers: tuple[int, ...] = (-1,)
    heads: int = 0
    mem_dim: int = 0
    ff_mult: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(int(i) for i in self.layers))
        if not self.layers:
            raise ValueError("cross-attention: layers is empty (name at least one layer)")
        if len(set(self.layers)) != len(self.layers):
            raise ValueError(f"cross-attention: layers {self.layers} repeat a layer")
        if self.heads < 0 or self.mem_dim < 0 or self.ff_mult < 0:
            raise ValueError(f"cross-attention: heads, mem_dim, ff_mult must be >= 0; got {self}")

    def to_dict(self) -> dict:
        return {**asdict(self), "layers": list(self.layers)}


class GatedCrossAttention(nn.Module):
    """``x + tanh(g_a) * attn(norm(x), memory)`` (+ ``tanh(g_f) * ff(norm(.))``), gates at 0.

    Rows whose memory is all padding get no update (rather than the NaN of a softmax over
    nothing).
    """

    def __init__(self, dim: int, mem_dim: int, heads: int, ff_mult: int = 0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"cross-attention: hidden size {dim} is not a multiple of "
                             f"{heads} heads")
        self.dim, self.mem_dim, self.heads = dim, mem_dim, heads
        self.norm = nn.LayerNorm(dim)
        # a 2D-wide memory is (key, value) halves of different scales: normalise each
        halves = 2 if mem_dim == 2 * dim else 1
        self.mem_norms = nn.ModuleList(nn.LayerNorm(mem_dim // halves) for _ in range(halves))
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(mem_dim, 2 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        # Identity projections: at the start each head attends to the memory vectors most
        # like its own state (a soft kNN over the memory) and reads them unchanged, so the
        # first gradients already favour copying from the right item. A memory of width 2D
        # holds (key, value) halves, like a kNN-LM datastore's (state, next token) pairs.
        with torch.no_grad():
            if mem_dim in (dim, 2 * dim):
                for w in (self.q.weight, self.out.weight):
                    nn.init.eye_(w)
                k, v = self.kv.weight.chunk(2)  # (D, mem_dim) each
                k.zero_()[:, :dim] = torch.eye(dim)
                v.zero_()[:, mem_dim - dim:] = torch.eye(dim)
        self.attn_gate = nn.Parameter(torch.zeros(()))
        self.ff = None
        if ff_mult:
            self.ff = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, ff_mult * dim), nn.GELU(),
                                    nn.Linear(ff_mult * dim, dim))
            self.ff_gate = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, memory: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, d = x.shape
        if memory.ndim != 3 or memory.shape[-1] != self.mem_dim:
            raise ValueError(f"cross-attention memory must be (B, M, {self.mem_dim}), got "
                             f"{tuple(memory.shape)}")
        if memory.shape[0] not in (1, b):
            raise ValueError(f"cross-attention memory has {memory.shape[0]} rows, the LLM "
                             f"runs {b}: set one memory row per batch row (or one for all)")
        m = memory.shape[1]
        if m == 0:  # nothing retrieved: the plain layer output
            return x
        if mask is None:
            mask = torch.ones(memory.shape[:2], dtype=torch.bool, device=memory.device)
        if mask.shape != memory.shape[:2]:
            raise ValueError(f"cross-attention mask {tuple(mask.shape)} does not match the "
                             f"memory's (B, M) = {tuple(memory.shape[:2])}")
        any_item = mask.any(dim=1)  # (B_mem,)
        mask = mask | ~any_item[:, None]  # an empty row attends to its padding, then is zeroed
        h, hd = self.heads, d // self.heads
        q = self.q(self.norm(x)).view(b, t, h, hd).transpose(1, 2)  # (B, H, T, hd)
        memory = torch.cat([norm(part) for norm, part in zip(
            self.mem_norms, memory.chunk(len(self.mem_norms), dim=-1), strict=True)], dim=-1)
        k, v = self.kv(memory).view(-1, m, 2, h, hd).permute(2, 0, 3, 1, 4)
        k, v = k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1)  # (B, H, M, hd)
        a = nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask.expand(b, -1)[:, None, None, :])  # (B, H, T, hd)
        a = self.out(a.transpose(1, 2).reshape(b, t, d))
        a = a * any_item.expand(b)[:, None, None].to(a.dtype)
        y = x + torch.tanh(self.attn_gate) * a
        if self.ff is not None:
            y = y + torch.tanh(self.ff_gate) * self.ff(y)
        return y


def decoder_layers(model: Any) -> nn.ModuleList:
    """The decoder layers of a transformers causal LM (``model.model.layers``)."""
    base = getattr(model, "model", None) or getattr(model, "base_model", None)
    layers = getattr(base, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"cross-attention: {type(model).__name__} has no model.layers "
                         "(Llama-family decoder layers); other layouts are not supported")
    return layers


def llm_dims(model: Any) -> tuple[int, int, int]:
    """``(hidden size, attention heads, decoder layers)`` of a causal LM."""
    c = model.config.get_text_config(decoder=True)
    return c.hidden_size, c.num_attention_heads, c.num_hidden_layers


class CrossAttentionAdapters(nn.Module):
    """Gated cross-attention blocks for the decoder layers of one causal LM.

    The blocks are this module's parameters, not the LLM's (its state dict is untouched);
    :meth:`attach` hooks them in, :meth:`detach` takes them out.

    Args:
        model: the transformers causal LM (only its sizes are read here).
        config: which layers, heads, memory width.
    """

    def __init__(self, model: Any, config: CrossAttentionConfig) -> None:
        super().__init__()
        dim, heads, n_layers = llm_dims(model)
        self.config, self.dim = config, dim
        self.mem_dim = config.mem_dim or dim
        bad = [i for i in config.layers if not -n_layers <= i < n_layers]
        if bad:
            raise ValueError(f"cross-attention: layers {bad} do not exist; the LLM has "
                             f"{n_layers} decoder layers")
        self.layer_ids = sorted({i % n_layers for i in config.layers})
        self.blocks = nn.ModuleDict({
            str(i): GatedCrossAttention(dim, self.mem_dim, config.heads or heads, config.ff_mult)
            for i in self.layer_ids})
        self._memory: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self._handles: list[Any] = []

    # ---- hooks ----------------------------------------------------------------------------
    def attach(self, model: Any) -> CrossAttentionAdapters:
        """Hook the blocks after their layers of ``model`` (the one given at construction)."""
        if self._handles:
            raise RuntimeError("cross-attention adapters are already attached")
        layers = decoder_layers(model)
        for i in self.layer_ids:
            self._handles.append(layers[i].register_forward_hook(self._hook(str(i))))
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, key: str):
        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            if self._memory is None:
                return None  # no memory set: the plain LLM
            memory, mask = self._memory
            h = output if isinstance(output, torch.Tensor) else output[0]  # (B, T, D)
            y = self.blocks[key](h, memory.to(h.dtype), mask)
            return y if isinstance(output, torch.Tensor) else (y, *output[1:])
        return hook

    @contextmanager
    def memory(self, memory: torch.Tensor, mask: torch.Tensor | None = None
               ) -> Iterator[None]:
        """Let the LLM attend to ``memory (B, M, mem_dim)`` (mask ``(B, M)``) inside the block.

        Raises:
            ValueError: memory of the wrong width or rank, a mask of another shape, or no
                adapters attached.
        """
        if not self._handles:
            raise ValueError("cross-attention adapters are not attached to a model: call "
                             "attach(model) first")
        if not isinstance(memory, torch.Tensor) or memory.ndim != 3 \
                or memory.shape[-1] != self.mem_dim:
            shape = tuple(memory.shape) if isinstance(memory, torch.Tensor) else type(memory)
            raise ValueError(f"cross-attention memory must be (B, M, {self.mem_dim}), got "
                             f"{shape}")
        if mask is not None and mask.shape != memory.shape[:2]:
            raise ValueError(f"cross-attention mask {tuple(mask.shape)} does not match the "
                             f"memory's (B, M) = {tuple(memory.shape[:2])}")
        if self._memory is not None:
            raise RuntimeError("cross-attention memory is already set (contexts do not nest)")
        p = next(self.parameters())
        self._memory = (memory.to(p.device),
                        None if mask is None else mask.to(device=p.device, dtype=torch.bool))
        try:
            yield
        finally:
            self._memory = None

    def gates(self) -> dict[str, float]:
        """``tanh(gate)`` of each block (how much of the memory reaches the LLM)."""
        return {k: round(float(torch.tanh(b.attn_gate.detach())), 4)
                for k, b in self.blocks.items()}


def pad_memory(items: Sequence[torch.Tensor], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack per-row memories ``(M_i, dim)`` into ``(B, max M, dim)`` and a mask ``(B, M)``.

    A row may be empty (``M_i = 0``): it gets an all-False mask (no update).
    """
    if not items:
        raise ValueError("pad_memory: no rows")
    for i, m in enumerate(items):
        if m.ndim != 2 or m.shape[1] != dim:
            raise ValueError(f"memory row {i} must be (M, {dim}), got {tuple(m.shape)}")
    width = max(1, max(m.shape[0] for m in items))
    out = items[0].new_zeros(len(items), width, dim)
    mask = torch.zeros(len(items), width, dtype=torch.bool)
    for i, m in enumerate(items):
        out[i, : m.shape[0]] = m
        mask[i, : m.shape[0]] = True
    return out, mask
