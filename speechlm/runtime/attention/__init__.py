"""Attention backends, chosen by name and installed through transformers' AttentionInterface.

A backend is a class (see ``base.AttentionBackend``); ``ATTENTION_BACKENDS`` maps short
names to lazy ``"module:Class"`` paths. A sparse backend (Tactic, Quest-style) only needs
a module with its class and one ``ATTENTION_BACKENDS.register(...)`` line.

>>> ATTENTION_BACKENDS.names()
['eager', 'quest', 'sdpa', 'tactic']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from speechlm.runtime.registry import Registry

if TYPE_CHECKING:
    from speechlm.runtime.attention.base import AttentionBackend

ATTENTION_BACKENDS = Registry(
    "attention backend",
    {
        "sdpa": "speechlm.runtime.attention.sdpa:SdpaBackend",
        "eager": "speechlm.runtime.attention.eager:EagerBackend",
        "tactic": "speechlm.runtime.attention.tactic:TacticBackend",
        "quest": "speechlm.runtime.attention.quest:QuestBackend",
    },
)


def build_attention(name: str, conf: dict[str, Any] | None = None) -> AttentionBackend:
    """Instantiate the backend registered as ``name`` with its ``attention_conf``."""
    cls = ATTENTION_BACKENDS.resolve(name)
    return cls(**(conf or {}))


__all__ = ["ATTENTION_BACKENDS", "build_attention"]
