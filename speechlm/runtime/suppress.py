"""A logits processor that never lets the model choose some tokens.

What transformers' ``SuppressTokensLogitsProcessor`` (every step) and
``SuppressTokensAtBeginLogitsProcessor`` (the first generated token only, Whisper's
``begin_suppress_tokens``) do, through the runtime's logits-processor plug point. Typical
use: a model trained on a serialized format (``<tag> value <tag> value ...``) must write
some free text after its last tag, and greedy decoding of a briefly tuned model would open
another tag at once (an empty answer once a stop string cuts it) instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from speechlm.runtime.retrieval import LogitsProcessor


class SuppressTokens(LogitsProcessor):
    """Scores of ``token_ids`` set to -inf (an empty set: the model as is).

    Args:
        token_ids: the ids never to choose.
        at_begin: only for each row's first generated token (later the tokens are
            allowed, e.g. as a stop string that ends the row). The processor then follows
            the rows through the runtime's ``set_rows`` / ``observe`` hooks, so it works in
            ``generate`` / ``generate_from_embeds`` only and serves one call: make a new
            one per call (it is cheap: the ids are shared).

    >>> import torch
    >>> SuppressTokens([1])(torch.zeros(1, 2), torch.tensor([[0.0, 5.0]])).argmax().item()
    0
    """

    def __init__(self, token_ids: Iterable[int], *, at_begin: bool = False) -> None:
        ids = token_ids if isinstance(token_ids, torch.Tensor) else \
            torch.tensor(sorted({int(i) for i in token_ids}), dtype=torch.long)
        if ids.numel() and int(ids.min()) < 0:
            raise ValueError(f"token ids must be >= 0, got {int(ids.min())}")
        self.token_ids, self.at_begin = ids, at_begin
        self._rows: list[int] | None = None  # prompt index of each row of the next call
        self._started: set[int] = set()      # prompts that have generated a token

    def set_rows(self, rows: list[int]) -> None:
        self._rows = list(rows)

    def observe(self, rows: list[int], tokens: list[int]) -> None:
        self._started.update(rows)

    def __call__(self, hidden: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        if self.token_ids.numel() == 0:
            return logits
        if int(self.token_ids[-1]) >= logits.shape[-1]:
            raise ValueError(f"token id {int(self.token_ids[-1])} is outside the vocabulary "
                             f"of {logits.shape[-1]} logits")
        out = logits.clone()
        ids = self.token_ids.to(out.device)
        if not self.at_begin:
            out[:, ids] = float("-inf")
            return out
        if self._rows is None or len(self._rows) != out.shape[0]:
            raise ValueError("SuppressTokens(at_begin=True) follows generation rows: use it "
                             "in generate / generate_from_embeds, a new one per call")
        for r, row in enumerate(self._rows):
            if row not in self._started:
                out[r, ids] = float("-inf")
        return out

    def fresh(self) -> SuppressTokens:
        """The same suppression with no rows seen (for the next generate call)."""
        return SuppressTokens(self.token_ids, at_begin=self.at_begin)

    @classmethod
    def containing(cls, tokenizer: Any, text: str, *, at_begin: bool = False) -> SuppressTokens:
        """Every token whose decoded text contains ``text`` (e.g. ``"<"``: no token can
        open a tag), found by decoding the whole vocabulary once."""
        if not text:
            raise ValueError("text must be non-empty")
        ids = [i for i in range(len(tokenizer))
               if text in tokenizer.decode([i], skip_special_tokens=False)]
        return cls(ids, at_begin=at_begin)
