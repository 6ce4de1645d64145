"""One instrumented forward pass: the single place the runtime calls the model.

``Engine.forward`` binds the cache to the attention backend, tells the energy governor
about the step, times it, and tracks the KV-cache size, so prefill, decode, scoring and
beam search all share the same plumbing (and the same metrics).
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import Any

import torch

from speechlm.runtime.attention.base import AttentionBackend
from speechlm.runtime.cache import build_cache
from speechlm.runtime.energy.governor import EnergyGovernor, Step


@dataclass
class CallStats:
    """Counters one public call accumulates over its forward passes."""

    prompt_tokens: int = 0
    generated_tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    kv_cache_bytes: int = 0
    batch_size: int = 0


def track_cache(stats: CallStats, cache: Any) -> None:
    """Keep the largest KV-cache size seen in ``stats``."""
    if cache is not None and hasattr(cache, "nbytes"):
        stats.kv_cache_bytes = max(stats.kv_cache_bytes, cache.nbytes())


@dataclass
class Engine:
    """A model with its plug-ins attached.

    Args:
        model: a transformers causal LM in eval mode (attention backend installed).
        attention: the installed attention backend.
        cache_name: ``KV_CACHES`` name used for fresh caches.
        governor: energy governor called around every forward pass.
    """

    model: Any
    attention: AttentionBackend
    cache_name: str
    governor: EnergyGovernor

    def __post_init__(self) -> None:
        # transformers >= 5.2x names the cache argument ``cache`` (``past_key_values`` is
        # deprecated there); older releases only know ``past_key_values``.
        params = inspect.signature(self.model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def new_cache(self) -> Any:
        return build_cache(self.cache_name, self.model.config)

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T)
        attention_mask: torch.Tensor | None,  # (B, L + T), L = cached length
        position_ids: torch.Tensor | None,  # (B, T)
        cache: Any,
        *,
        phase: str,
        stats: CallStats,
        logits_to_keep: int = 0,
        output_hidden_states: bool = False,
    ) -> Any:
        """Run the model on ``input_ids`` after ``cache`` (None: no cache); return its output."""
        b, t = input_ids.shape
        context = cache.get_seq_length() if cache is not None else 0
        step = Step(phase, batch_size=b, num_tokens=t, context_len=context)
        self.governor.begin(step)
        start = time.perf_counter()
        with self.attention.bound(cache), torch.inference_mode():
            out = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=cache is not None,
                logits_to_keep=logits_to_keep,
                output_hidden_states=output_hidden_states,
                **{self._cache_kwarg: cache},
            )
        if input_ids.device.type == "cuda":
            torch.cuda.synchronize(
                input_ids.device
            )  # so the latency is the step's, not the launch's
        seconds = time.perf_counter() - start
        self.governor.end(step, seconds)
        if phase == "prefill":
            stats.prefill_s += seconds
        else:
            stats.decode_s += seconds
        stats.batch_size = max(stats.batch_size, b)
        if phase == "prefill":  # decode loops report their final size (saves a walk per step)
            track_cache(stats, cache)
        return out
