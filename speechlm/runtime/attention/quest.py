"""``quest``: fixed-budget page selection in the style of Quest (the baseline for Tactic).

The cached keys are cut into pages of ``page_size`` tokens with per-page elementwise
min/max key bounds; each decode step scores pages by the upper bound
``sum_d max(q_d * min_d, q_d * max_d)`` and keeps the ``top_k`` pages per query head,
united over each GQA group, plus the tokens after the page index (dense). The budget is
fixed (``top_k * page_size`` tokens per head), unlike Tactic's. Page bounds are built and
refreshed exactly like Tactic's clusters (``IndexedDecodeBackend``) so the two differ only
in how they choose tokens.

>>> QuestBackend(top_k=8).config.page_size
16
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from speechlm.runtime.attention.tactic import IndexedDecodeBackend


@dataclass(frozen=True)
class QuestConfig:
    """Settings of the ``quest`` backend (``attention_conf``).

    Args:
        page_size: tokens per page.
        top_k: pages kept per query head (``top_k * page_size`` tokens).
        refresh: rebuild the page bounds once this many tokens were appended.
        min_tokens: below this many cached tokens a decode step runs dense.
        record: per head/layer/step instrumentation (as ``tactic``).
        impl: kernel implementation for the attention over the selection.
    """

    page_size: int = 16
    top_k: int = 64
    refresh: int = 2048
    min_tokens: int = 1024
    record: bool = False
    impl: str = "auto"

    def __post_init__(self) -> None:
        for name in ("page_size", "top_k", "refresh", "min_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.impl not in ("auto", "triton", "ref"):
            raise ValueError(f"impl must be 'auto', 'triton' or 'ref', got {self.impl!r}")


class QuestBackend(IndexedDecodeBackend):
    """Top-K pages by min/max key bounds (see the module docstring)."""

    name: ClassVar[str] = "quest"

    def __init__(self, **conf: Any) -> None:
        super().__init__()
        self.config = QuestConfig(**conf)

    def build(self, keys, key_valid):
        from speechlm_kernels.tactic import build_pages

        return build_pages(keys, key_valid, page_size=self.config.page_size)

    def select(self, q, keys, index, key_valid, scale):
        from speechlm_kernels.tactic import quest_select

        return quest_select(q, keys, index, key_valid, top_k=self.config.top_k, scale=scale)
