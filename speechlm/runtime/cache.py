"""Per-layer KV caches with explicit lengths, on top of transformers' ``cache_utils``.

``ContiguousLayer`` keeps each layer's keys and values in one preallocated buffer
``(B, Hkv, capacity, D)`` that grows by doubling, and an explicit ``length``: appending a
decode step writes one slot instead of re-concatenating the whole cache (what
``DynamicLayer`` does), and nothing is inferred from the contents (unlike
``StaticLayer.get_seq_length``, which looks for non-zero keys). Reordering for beam
search, batch expansion for a shared prompt, cropping and offloading are cache methods,
never model code.

``KV_CACHES`` maps names to cache classes: ``"contiguous"`` (default) and ``"dynamic"``
(transformers' ``DynamicCache``, the reference).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from speechlm.runtime.registry import Registry

KV_CACHES = Registry(
    "kv cache",
    {
        "contiguous": "speechlm.runtime.cache:KVCache",
        "dynamic": "speechlm.runtime.cache:DynamicKVCache",
    },
)

_MIN_CAPACITY = 16


class ContiguousLayer(DynamicLayer):
    """One layer's K/V in a growing buffer; ``keys``/``values`` are views of the filled part.

    >>> layer = ContiguousLayer()
    >>> k = torch.zeros(2, 1, 3, 4)  # (B, Hkv, T, D)
    >>> layer.update(k, k)[0].shape
    torch.Size([2, 1, 3, 4])
    >>> layer.length, layer.capacity
    (3, 16)
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.length = 0
        self.reserve = 0  # extra slots to allocate up front (known decode length)
        self._k: torch.Tensor | None = None  # (B, Hkv, capacity, D)
        self._v: torch.Tensor | None = None

    @property
    def capacity(self) -> int:
        return 0 if self._k is None else self._k.shape[2]

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        self.is_initialized = True

    def _set_buffers(self, k: torch.Tensor, v: torch.Tensor, length: int) -> None:
        self._k, self._v, self.length = k, v, length
        self.keys = k[:, :, :length]  # (B, Hkv, T, D) views, no copy
        self.values = v[:, :, :length]

    def _grow(self, needed: int) -> None:
        capacity = max(_MIN_CAPACITY, self.capacity)
        while capacity < needed:
            capacity *= 2
        if capacity == self.capacity:
            return
        b, h, _, d = self._k.shape
        k = self._k.new_empty(b, h, capacity, d)
        v = self._v.new_empty(b, h, capacity, self._v.shape[-1])
        k[:, :, : self.length] = self._k[:, :, : self.length]
        v[:, :, : self.length] = self._v[:, :, : self.length]
        self._set_buffers(k, v, self.length)

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``(B, Hkv, T, D)`` keys/values; return the full ``(B, Hkv, L+T, D)`` views."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        t = key_states.shape[-2]
        if self._k is None:
            b, h, _, d = key_states.shape
            cap = max(_MIN_CAPACITY, t + self.reserve)
            self._set_buffers(
                key_states.new_empty(b, h, cap, d),
                value_states.new_empty(b, h, cap, value_states.shape[-1]),
                0,
            )
        elif self._k.shape[0] != key_states.shape[0]:
            raise ValueError(
                f"cache batch size {self._k.shape[0]} != new keys' batch size {key_states.shape[0]}"
            )
        self._grow(self.length + t)
        end = self.length + t
        self._k[:, :, self.length : end] = key_states
        self._v[:, :, self.length : end] = value_states
        self._set_buffers(self._k, self._v, end)
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def reset(self) -> None:
        self._k = self._v = None
        self.length = 0
        super().reset()

    def crop(self, tokens_to_remove: int) -> None:
        """Drop the last ``-tokens_to_remove`` tokens (negative, as in transformers)."""
        if tokens_to_remove > 0:
            raise ValueError(
                f"crop takes a negative count of tokens to remove, got {tokens_to_remove}"
            )
        if self._k is not None and tokens_to_remove:
            self._set_buffers(self._k, self._v, max(0, self.length + tokens_to_remove))

    def _select(self, fn) -> None:
        if self._k is None:
            return
        k, v = fn(self._k[:, :, : self.length]), fn(self._v[:, :, : self.length])
        self._set_buffers(k.contiguous(), v.contiguous(), self.length)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Keep batch rows ``beam_idx`` (beam search: each new beam's parent)."""
        self._select(lambda x: x.index_select(0, beam_idx.to(x.device)))

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._select(lambda x: x.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._select(lambda x: x[indices])

    def offload(self) -> None:
        if self._k is not None:
            self._set_buffers(
                self._k.to("cpu", non_blocking=True),
                self._v.to("cpu", non_blocking=True),
                self.length,
            )

    def prefetch(self) -> None:
        if self._k is not None and self._k.device != self.device:
            self._set_buffers(
                self._k.to(self.device, non_blocking=True),
                self._v.to(self.device, non_blocking=True),
                self.length,
            )

    def nbytes(self, allocated: bool = False) -> int:
        """Bytes of the filled part (or of the whole buffer when ``allocated``)."""
        if self._k is None:
            return 0
        if allocated:
            return self._k.nbytes + self._v.nbytes
        return (
            self._k[:, :, : self.length].numel() * self._k.element_size()
            + self._v[:, :, : self.length].numel() * self._v.element_size()
        )


class _RuntimeCacheMixin:
    """What the runtime needs from any cache: sizes and batch expansion."""

    layers: list

    def lengths(self) -> list[int]:
        """Explicit per-layer cached lengths."""
        return [layer.get_seq_length() for layer in self.layers]

    def nbytes(self) -> int:
        total = 0
        for layer in self.layers:
            if hasattr(layer, "nbytes"):
                total += layer.nbytes()
            elif getattr(layer, "keys", None) is not None and layer.keys.numel():
                total += layer.keys.nbytes + layer.values.nbytes
        return total

    def reserve(self, tokens: int) -> None:
        """Hint that ``tokens`` more positions will follow the first update (no-op if unused)."""
        for layer in self.layers:
            if hasattr(layer, "reserve"):
                layer.reserve = tokens

    def fork(self, batch_size: int, reserve: int = 0) -> Any:
        """A new cache of the same kind holding ``batch_size`` copies of this batch-1 cache.

        The shared prompt of N-best scoring is run once; every batch of hypotheses then
        continues from its own fork (this cache stays untouched for the next batch).
        """
        new = type(self).for_model(self.config)
        new.reserve(reserve)
        for src, dst in zip(self.layers, new.layers, strict=True):
            if src.get_seq_length() == 0:
                continue
            if src.keys.shape[0] != 1:
                raise ValueError(
                    f"fork needs a batch-1 cache, this one has batch {src.keys.shape[0]}"
                )
            shape = (batch_size, *src.keys.shape[1:])
            dst.update(src.keys.expand(shape), src.values.expand(*shape[:-1], src.values.shape[-1]))
        return new

    def expand_batch(self, batch_size: int) -> None:
        """Turn a batch-1 cache (a shared prompt) into ``batch_size`` identical rows."""
        if self.layers and self.layers[0].get_seq_length() > 0:
            first = self.layers[0].keys.shape[0]
            if first != 1:
                raise ValueError(f"expand_batch needs a batch-1 cache, this one has batch {first}")
        self.batch_repeat_interleave(batch_size)


class KVCache(_RuntimeCacheMixin, Cache):
    """A cache of ``ContiguousLayer`` s, one per decoder layer."""

    def __init__(self, num_layers: int) -> None:
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        super().__init__(layers=[ContiguousLayer() for _ in range(num_layers)])

    @classmethod
    def for_model(cls, config: Any) -> KVCache:
        cache = cls(config.get_text_config(decoder=True).num_hidden_layers)
        cache.config = config
        return cache


class DynamicKVCache(_RuntimeCacheMixin, DynamicCache):
    """transformers' ``DynamicCache`` (sliding-window aware), with the runtime's helpers."""

    @classmethod
    def for_model(cls, config: Any) -> DynamicKVCache:
        cache = cls(config=config)
        cache.config = config
        return cache


def build_cache(name: str, config: Any) -> Cache:
    """A fresh cache of the kind registered as ``name`` for a model ``config``."""
    return KV_CACHES.resolve(name).for_model(config)
