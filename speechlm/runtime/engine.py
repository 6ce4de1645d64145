"""One instrumented forward pass: the single place the runtime calls the model.

``Engine.forward`` binds the cache to the attention backend, tells the energy governor
about the step, times it, and tracks the KV-cache size, so prefill, decode, scoring and
beam search all share the same plumbing (and the same metrics).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
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


PLAIN_HEAD_MODELS = frozenset(
    {"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gpt2"}
)


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
        # Where the causal-LM head is exactly ``lm_head(last_hidden_state)`` (no logit
        # scaling or soft-capping), scoring runs the base model and applies the head to
        # the scored positions only: padding never reaches the (large) vocabulary matmul.
        self._plain_head = getattr(self.model.config, "model_type", None) in PLAIN_HEAD_MODELS
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
        head: bool = True,
        then: Callable[[Any], Any] | None = None,
        inputs_embeds: torch.Tensor | None = None,  # (B, T, D): replaces input_ids' lookup
    ) -> Any:
        """Run the model on ``input_ids`` after ``cache`` (None: no cache); return its output.

        ``then(output)``, when given, runs inside the same timed step (and governor window)
        and its result is returned instead. ``inputs_embeds`` (same B, T as ``input_ids``)
        feeds embeddings instead of looking ``input_ids`` up (a prefix that is not text).
        """
        b, t = input_ids.shape
        context = cache.get_seq_length() if cache is not None else 0
        step = Step(phase, batch_size=b, num_tokens=t, context_len=context)
        self.governor.begin(step)
        start = time.perf_counter()
        with self.attention.bound(cache), torch.inference_mode():
            # head=False: the base model only (hidden states, no vocabulary projection)
            module = self.model if head else self.model.base_model
            extra = {"logits_to_keep": logits_to_keep} if head else {}
            feed = {"input_ids": input_ids} if inputs_embeds is None else {
                "inputs_embeds": inputs_embeds}
            out = module(
                **feed,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=cache is not None,
                **extra,
                output_hidden_states=output_hidden_states,
                **{self._cache_kwarg: cache},
            )
            if then is not None:
                out = then(out)
        if input_ids.device.type == "cuda":
            # so the latency is the step's, not the launch's
            torch.cuda.synchronize(input_ids.device)
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

    def check_processor(self) -> None:
        """A logits processor needs logits = ``lm_head(final hidden state)``."""
        if not self._plain_head:
            raise ValueError(
                f"logits processors (kNN-LM) need a plain LM head; model_type "
                f"{self.model.config.model_type!r} is not one of {sorted(PLAIN_HEAD_MODELS)}")

    def last_logits(
        self,
        input_ids: torch.Tensor,  # (B, T)
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        cache: Any,
        *,
        phase: str,
        stats: CallStats,
        processor: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Float32 scores ``(B, V)`` of the next token after each row (processor applied)."""
        if processor is None:
            out = self.forward(input_ids, attention_mask, position_ids, cache, phase=phase,
                               stats=stats, logits_to_keep=1, inputs_embeds=inputs_embeds)
            return out.logits[:, -1].float()
        self.check_processor()
        head = self.model.get_output_embeddings()

        def then(out: Any) -> torch.Tensor:
            h = out.last_hidden_state[:, -1:]  # (B, 1, D): as the head sees it with keep=1
            return processor(h[:, 0], head(h)[:, 0].float())

        return self.forward(input_ids, attention_mask, position_ids, cache, phase=phase,
                            stats=stats, head=False, then=then, inputs_embeds=inputs_embeds)

    def scored_logits(
        self,
        input_ids: torch.Tensor,  # (B, T)
        attention_mask: torch.Tensor,  # (B, L + T)
        position_ids: torch.Tensor,  # (B, T)
        cache: Any,
        *,
        stats: CallStats,
        rows: torch.Tensor,  # (N,) batch row of each wanted position
        cols: torch.Tensor,  # (N,) position within the row
        processor: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Logits ``(N, V)`` at positions ``(rows, cols)`` of one prefill pass.

        ``processor(hidden (N, D), logits (N, V))``, when given, turns them into the scores
        returned (a retrieval plug-in such as kNN-LM).
        """
        if processor is not None:
            self.check_processor()
            head = self.model.get_output_embeddings()

            def then(out: Any) -> torch.Tensor:
                h = out.last_hidden_state[rows, cols]  # (N, D)
                return processor(h, head(h).float())

            return self.forward(input_ids, attention_mask, position_ids, cache,
                                phase="prefill", stats=stats, head=False, then=then)
        if not self._plain_head:
            out = self.forward(
                input_ids, attention_mask, position_ids, cache, phase="prefill", stats=stats
            )
            return out.logits[rows, cols]
        head = self.model.get_output_embeddings()
        return self.forward(
            input_ids,
            attention_mask,
            position_ids,
            cache,
            phase="prefill",
            stats=stats,
            head=False,
            then=lambda out: head(out.last_hidden_state[rows, cols]),  # (N, V)
        )
