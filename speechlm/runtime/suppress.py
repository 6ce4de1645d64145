"""A logits processor that never lets the model choose some tokens.

What transformers' ``SuppressTokensLogitsProcessor`` and vLLM's single-token ``bad_words``
do, through the runtime's logits-processor plug point (so it works for ``generate``,
``generate_from_embeds`` and, where a caller wants it, ``score``). Typical use: a model
trained on a serialized format (``<tag> value <tag> value ...``) must write free text after
its last tag, and greedy decoding of a briefly tuned model would open another tag instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from speechlm.runtime.retrieval import LogitsProcessor


class SuppressTokens(LogitsProcessor):
    """Scores of ``token_ids`` set to -inf at every step (an empty set: the model as is).

    >>> import torch
    >>> SuppressTokens([1])(torch.zeros(1, 2), torch.tensor([[0.0, 5.0]])).argmax().item()
    0
    """

    def __init__(self, token_ids: Iterable[int]) -> None:
        ids = sorted({int(i) for i in token_ids})
        if ids and ids[0] < 0:
            raise ValueError(f"token ids must be >= 0, got {ids[0]}")
        self.token_ids = torch.tensor(ids, dtype=torch.long)

    def __call__(self, hidden: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        if self.token_ids.numel() == 0:
            return logits
        if int(self.token_ids[-1]) >= logits.shape[-1]:
            raise ValueError(f"token id {int(self.token_ids[-1])} is outside the vocabulary "
                             f"of {logits.shape[-1]} logits")
        out = logits.clone()
        out[:, self.token_ids.to(out.device)] = float("-inf")
        return out

    @classmethod
    def containing(cls, tokenizer: Any, text: str) -> SuppressTokens:
        """Every token whose decoded text contains ``text`` (e.g. ``"<"``: no token can
        open a tag), found by decoding the whole vocabulary once."""
        if not text:
            raise ValueError("text must be non-empty")
        ids = [i for i in range(len(tokenizer))
               if text in tokenizer.decode([i], skip_special_tokens=False)]
        return cls(ids)
