"""Semantic feedback: judge the transcripts of continuations, turn them into preference pairs.

Judges score ``(prompt transcript, continuation transcript)``; higher is better:

* ``llm``: SmolLM2-135M-Instruct's mean natural-log probability per token of the
  continuation after the prompt (``LanguageModel.score`` with ``prefix``);
* ``embedding``: cosine similarity of MiniLM sentence embeddings of prompt and continuation.

``build_pairs`` takes each prompt's scored candidates and keeps chosen = best, rejected =
worst when their scores differ by at least ``margin``. Candidates that cannot be judged are
counted, never guessed: an empty continuation (no units), an empty transcript, a judge
that returned nothing or a non-finite number. A candidate filed under another prompt is an
error: a pair is always two continuations of the same prompt.

>>> c = [Candidate("p1", [4, 5], "hi there", -1.0), Candidate("p1", [6], "so", -3.0)]
>>> pairs, counts = build_pairs({"p1": c}, {"p1": [1, 2]}, margin=0.5)
>>> pairs[0].chosen, pairs[0].rejected, counts["pairs"]
(' u4 u5', ' u6', 1)
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from speechlm.core.errors import InputError
from speechlm.slm.units import units_to_text

__all__ = ["Candidate", "EmbeddingJudge", "LLMJudge", "Pair", "build_pairs"]


@dataclass
class Candidate:
    """One sampled continuation of a prompt, its transcript and the judge's score."""

    prompt_id: str
    units: list[int]
    text: str = ""
    score: float | None = None


@dataclass(frozen=True)
class Pair:
    """A DPO example in trl's standard (non-conversational) form: ``prompt`` + ``chosen``
    and ``prompt`` + ``rejected`` are unit texts; the completions start with a space so the
    concatenation splits into the same unit words."""

    prompt_id: str
    prompt: str
    chosen: str
    rejected: str
    chosen_score: float
    rejected_score: float
    chosen_text: str = ""
    rejected_text: str = ""

    def trl_row(self) -> dict[str, str]:
        return {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected}


def _why_unjudged(c: Candidate) -> str | None:
    if not c.units:
        return "empty_continuation"
    if not c.text.strip():
        return "empty_transcript"
    if c.score is None or not math.isfinite(c.score):
        return "judge_failed"
    return None


def build_pairs(groups: dict[str, Sequence[Candidate]], prompts: dict[str, Sequence[int]],
                margin: float) -> tuple[list[Pair], Counter]:
    """Best vs worst judged candidate per prompt, kept when the score gap is >= ``margin``.

    Args:
        groups: prompt id -> its candidates.
        prompts: prompt id -> prompt units.
        margin: the least score difference for a pair (>= 0).

    Returns:
        (pairs in prompt-id order, counts: ``pairs``, ``below_margin``, ``identical``,
        ``too_few_judged`` per prompt, and ``empty_continuation``, ``empty_transcript``,
        ``judge_failed`` per candidate).

    Raises:
        InputError: a candidate filed under another prompt, or a prompt without units.
    """
    if margin < 0 or not math.isfinite(margin):
        raise ValueError(f"margin must be a finite number >= 0, got {margin}")
    pairs, counts = [], Counter()
    for pid in sorted(groups):
        if pid not in prompts or not prompts[pid]:
            raise InputError(f"prompt {pid!r}: candidates but no prompt units")
        judged = []
        for c in groups[pid]:
            if c.prompt_id != pid:
                raise InputError(f"a candidate of prompt {c.prompt_id!r} is filed under {pid!r}")
            why = _why_unjudged(c)
            if why:
                counts[why] += 1
            else:
                judged.append(c)
        if len(judged) < 2:
            counts["too_few_judged"] += 1
            continue
        # max/min keep the first of equal scores: the order of sampling, deterministic
        best = max(judged, key=lambda c: c.score)
        worst = min(judged, key=lambda c: c.score)
        if best.units == worst.units or best.text == worst.text:
            counts["identical"] += 1
            continue
        if best.score - worst.score < margin:
            counts["below_margin"] += 1
            continue
        pairs.append(Pair(pid, units_to_text(prompts[pid]), " " + units_to_text(best.units),
                          " " + units_to_text(worst.units), float(best.score),
                          float(worst.score), best.text, worst.text))
    counts["pairs"] = len(pairs)
    return pairs, counts


class LLMJudge:
    """Mean log-probability per token of the continuation after the prompt, by an LLM."""

    name = "llm"

    def __init__(self, lm) -> None:
        self.lm = lm

    def __call__(self, prompt: str, continuations: Sequence[str]) -> list[float | None]:
        out: list[float | None] = [None] * len(continuations)
        idx = [i for i, t in enumerate(continuations) if t.strip()]
        if not idx or not prompt.strip():
            return out
        res = self.lm.score([" " + continuations[i].strip() for i in idx],
                            prefix=prompt.strip(), per_token=True)
        for i, r in zip(idx, res, strict=True):
            out[i] = r.total / max(len(r.token_logprobs), 1)
        return out


class EmbeddingJudge:
    """Cosine similarity of sentence embeddings of prompt and continuation."""

    name = "embedding"

    def __init__(self, encoder) -> None:
        self.encoder = encoder

    def __call__(self, prompt: str, continuations: Sequence[str]) -> list[float | None]:
        import numpy as np

        out: list[float | None] = [None] * len(continuations)
        idx = [i for i, t in enumerate(continuations) if t.strip()]
        if not idx or not prompt.strip():
            return out
        vecs = np.asarray(self.encoder.embed([prompt] + [continuations[i] for i in idx]),
                          dtype=np.float64)
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        for k, i in enumerate(idx):
            out[i] = float(vecs[0] @ vecs[k + 1])
        return out
