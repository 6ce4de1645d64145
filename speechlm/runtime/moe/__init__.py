"""Mixture-of-experts hooks: replace a sparse-MoE block's expert computation from outside.

>>> MOE_EXECUTORS.names()
['loop', 'transformers']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from speechlm.runtime.registry import Registry

if TYPE_CHECKING:
    from speechlm.runtime.moe.experts import ExpertExecutor

MOE_EXECUTORS = Registry(
    "moe executor",
    {
        "transformers": "speechlm.runtime.moe.experts:TransformersExecutor",
        "loop": "speechlm.runtime.moe.experts:LoopExecutor",
    },
)


def build_executor(name: str, conf: dict[str, Any] | None = None) -> ExpertExecutor:
    """Instantiate the executor registered as ``name`` with its conf."""
    return MOE_EXECUTORS.resolve(name)(**(conf or {}))


__all__ = ["MOE_EXECUTORS", "build_executor"]
