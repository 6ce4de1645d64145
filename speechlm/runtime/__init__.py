"""The one LLM runtime over transformers models. Knows tokens, caches and devices, not speech.

``import speechlm.runtime`` stays light: the interface types come from ``base`` (no torch),
and ``LLM`` is imported on first use (it pulls in torch and transformers).

>>> from speechlm.runtime import SamplingParams
>>> SamplingParams(max_tokens=4).greedy
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from speechlm.runtime.base import Completion, LanguageModel, SamplingParams, ScoreResult

if TYPE_CHECKING:
    from speechlm.runtime.llm import LLM

__all__ = ["LLM", "LanguageModel", "SamplingParams", "Completion", "ScoreResult"]


def __getattr__(name: str) -> Any:
    # Lazy: importing torch + transformers costs seconds; callers that only need the
    # interface types (remote backends, configs) should not pay for it.
    if name == "LLM":
        from speechlm.runtime.llm import LLM

        return LLM
    raise AttributeError(f"module 'speechlm.runtime' has no attribute {name!r}")
