"""Mixture-of-experts hooks: replace a sparse-MoE block's expert computation from outside.

>>> MOE_EXECUTORS.names()
['cpu_experts', 'fiddler', 'loop', 'lru_experts', 'transformers']
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
        # offload executors: built by apply_moe_offload (they need a Placement)
        "fiddler": "speechlm.runtime.moe.fiddler:FiddlerExecutor",
        "lru_experts": "speechlm.runtime.moe.baselines:LRUExecutor",
        "cpu_experts": "speechlm.runtime.moe.baselines:CPUExecutor",
    },
)


def build_executor(name: str, conf: dict[str, Any] | None = None) -> ExpertExecutor:
    """Instantiate the executor registered as ``name`` with its conf."""
    return MOE_EXECUTORS.resolve(name)(**(conf or {}))


__all__ = ["MOE_EXECUTORS", "build_executor"]
