"""Word errors of picked hypotheses, the N-best oracle and the summary row of a method.

>>> from speechlm.llm.second_pass.nbest import NbestItem
>>> items = [NbestItem("u1", ("a c", "a b"), "a b")]
>>> wer(items, {"u1": "a c"}), wer(items, oracle(items))
(50.0, 0.0)
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import kaldialign

from speechlm.llm.second_pass.nbest import NbestItem

__all__ = ["errors", "gap_closed", "oracle", "one_best", "wer"]


def errors(ref: str, hyp: str) -> int:
    """Word-level Levenshtein distance (substitutions + deletions + insertions)."""
    return int(kaldialign.edit_distance(ref.split(), hyp.split())["total"])


def one_best(items: Sequence[NbestItem]) -> dict[str, str]:
    return {it.utt: (it.hyps[0] if it.hyps else "") for it in items}


def oracle(items: Sequence[NbestItem]) -> dict[str, str]:
    """The hypothesis of fewest errors per utterance (the first such; 1-best without a ref)."""
    out = {}
    for it in items:
        if not it.hyps:
            out[it.utt] = ""
        elif it.ref is None:
            out[it.utt] = it.hyps[0]
        else:
            out[it.utt] = min(it.hyps, key=lambda h: errors(it.ref, h))
    return out


def wer(items: Sequence[NbestItem], picks: Mapping[str, str]) -> float:
    """WER in percent over the utterances that have a reference (others are skipped)."""
    err = words = 0
    for it in items:
        if it.ref is None:
            continue
        err += errors(it.ref, picks.get(it.utt, ""))
        words += len(it.ref.split())
    return 100.0 * err / words if words else float("nan")


def gap_closed(method: float, first: float, best: float) -> float:
    """Share (percent) of the 1-best -> oracle WER gap that a method closes (may exceed
    100 when it beats the oracle, or be negative)."""
    return 100.0 * (first - method) / (first - best) if first != best else float("nan")
