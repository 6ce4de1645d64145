"""Combine Argos rules with a classic detector: OR, AND, or a weighted vote.

``weighted`` uses the classic detector's score relative to its threshold
(``ratio = score / threshold``, so the detector alone fires at ratio > 1), squashed to
``c = clip(ratio / 2, 0, 1)``, and fires where ``weight * rule + (1 - weight) * c > 0.5``.
``weight`` 0 is the classic detector alone, 1 the rules alone; in between, a rule's alarm
lowers the classic threshold and the classic detector alone needs a higher score
(weight 0.25: ratio > 2/3 with a rule alarm, > 4/3 without).
``fit_weight`` picks the weight from ``WEIGHTS`` by pooled training F1.

>>> r = np.array([1, 0, 0, 1], dtype=bool); b = np.array([1, 1, 0, 0], dtype=bool)
>>> combine(r, b, "or").tolist(), combine(r, b, "and").tolist()
([True, True, False, True], [True, False, False, False])
>>> combine(r, b, "weighted", ratio=np.array([1.5, 1.5, 3.0, 0.5]), weight=0.25).tolist()
[True, True, True, False]
"""

from __future__ import annotations

import numpy as np

from speechlm.monitor.scoring import prf

__all__ = ["combine", "fit_weight", "MODES", "WEIGHTS"]

MODES = ("or", "and", "weighted")
WEIGHTS = (0.5, 0.25, 0.75, 0.0, 1.0)  # ties go to the first


def combine(rule: np.ndarray, classic: np.ndarray, mode: str, *,
            ratio: np.ndarray | None = None, weight: float = 0.5) -> np.ndarray:
    """(T,) bool from a rule mask and a classic mask (``weighted``: the classic ratio)."""
    if mode == "or":
        return rule | classic
    if mode == "and":
        return rule & classic
    if mode == "weighted":
        if ratio is None:
            raise ValueError("mode 'weighted' needs the classic score/threshold ratio")
        c = np.clip(np.nan_to_num(ratio) / 2, 0, 1)
        return weight * rule + (1 - weight) * c > 0.5
    raise ValueError(f"unknown mode {mode!r}; choose from {MODES}")


def fit_weight(rules: list[np.ndarray], ratios: list[np.ndarray],
               labels: list[np.ndarray]) -> float:
    """The weight of ``WEIGHTS`` with the best pooled training point F1."""
    best = (WEIGHTS[0], -1.0)
    for w in WEIGHTS:
        tp = fp = fn = 0
        for r, x, y in zip(rules, ratios, labels, strict=True):
            p = combine(r, r, "weighted", ratio=x, weight=w)
            tp += int(np.sum(p & y))
            fp += int(np.sum(p & ~y))
            fn += int(np.sum(~p & y))
        f1 = prf(tp, fp, fn)["f1"]
        if f1 > best[1]:
            best = (w, f1)
    return best[0]
