"""Anomaly detection metrics over boolean (T,) masks, pooled over many series.

- ``point``: point-wise precision / recall / F1 (counts summed over all series).
- ``range``: range-based precision / recall (Tatbul et al., NeurIPS 2018, "Precision and
  Recall for Time Series"), with existence weight ``alpha`` (0 by default: overlap only),
  a flat positional bias and the reciprocal cardinality factor (a real range split over
  k predicted ranges, or a prediction touching k real ranges, counts 1/k). Recall is
  the mean over all real ranges of all series, precision the mean over all predicted
  ranges; F1 is their harmonic mean.
- ``point_adjusted``: a real range counts as fully detected when any of its points is
  flagged (Xu et al. 2018; the Argos paper's metric). Known to inflate scores: one lucky
  point in a long window earns the whole window.

>>> y = np.array([0, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
>>> p = np.array([0, 0, 1, 0, 0, 0, 1, 0], dtype=bool)
>>> s = score([p], [y])
>>> round(s["point"]["f1"], 3), round(s["point_adjusted"]["f1"], 3), round(s["range"]["f1"], 3)
(0.4, 0.857, 0.4)
"""

from __future__ import annotations

import numpy as np

__all__ = ["score", "ranges", "point_adjust", "prf"]


def ranges(mask: np.ndarray) -> list[tuple[int, int]]:
    """Runs of True as (start, end) indices, end exclusive.

    >>> ranges(np.array([1, 1, 0, 1], dtype=bool))
    [(0, 2), (3, 4)]
    """
    m = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(m[1:] != m[:-1])
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def point_adjust(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    """``pred`` with every real range that it touches filled in."""
    out = np.asarray(pred, dtype=bool).copy()
    for a, b in ranges(label):
        if out[a:b].any():
            out[a:b] = True
    return out


def prf(tp: float, fp: float, fn: float) -> dict:
    tp, fp, fn = float(tp), float(fp), float(fn)
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def _range_terms(pred: np.ndarray, label: np.ndarray, alpha: float) -> tuple[list, list]:
    """Per real range its recall, per predicted range its precision."""
    real, found = ranges(label), ranges(pred)
    recalls, precisions = [], []
    for a, b in real:
        overlaps = [min(b, d) - max(a, c) for c, d in found if min(b, d) > max(a, c)]
        existence = 1.0 if overlaps else 0.0
        overlap = sum(overlaps) / (b - a) / max(1, len(overlaps))  # flat bias, 1/k
        recalls.append(alpha * existence + (1 - alpha) * overlap)
    for c, d in found:
        overlaps = [min(b, d) - max(a, c) for a, b in real if min(b, d) > max(a, c)]
        precisions.append(sum(overlaps) / (d - c) / max(1, len(overlaps)))
    return recalls, precisions


def score(preds: list[np.ndarray], labels: list[np.ndarray], alpha: float = 0.0) -> dict:
    """Point, range-based and point-adjusted precision / recall / F1, pooled.

    Args:
        preds, labels: one boolean (T_i,) array per series, same shapes pairwise.
        alpha: the range-based recall's existence weight (Tatbul's alpha).

    Returns:
        ``{"point": {...}, "range": {...}, "point_adjusted": {...}}``, each with
        ``precision``, ``recall``, ``f1``; plus ``"n_points"`` and ``"n_ranges"``.
    """
    if len(preds) != len(labels):
        raise ValueError(f"{len(preds)} predictions for {len(labels)} label arrays")
    pt = np.zeros(3)
    pa = np.zeros(3)
    rec, prec = [], []
    n = 0
    for i, (p, y) in enumerate(zip(preds, labels, strict=True)):
        p, y = np.asarray(p, dtype=bool), np.asarray(y, dtype=bool)
        if p.shape != y.shape:
            raise ValueError(f"series {i}: prediction {p.shape} vs labels {y.shape}")
        n += y.size
        pt += _counts(p, y)
        pa += _counts(point_adjust(p, y), y)
        r, q = _range_terms(p, y, alpha)
        rec += r
        prec += q
    rp = float(np.mean(prec)) if prec else 0.0
    rr = float(np.mean(rec)) if rec else 0.0
    return {"point": prf(*pt), "point_adjusted": prf(*pa),
            "range": {"precision": rp, "recall": rr,
                      "f1": 2 * rp * rr / (rp + rr) if rp + rr else 0.0},
            "n_points": n, "n_ranges": len(rec)}


def _counts(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.array([np.sum(p & y), np.sum(p & ~y), np.sum(~p & y)], dtype=float)
