"""Classic detectors: an anomaly score per point, fitted on the training part only.

- ``zscore``: distance from the trailing-window mean in trailing standard deviations
  (causal; numpy cumulative sums; the window excludes the point itself).
- ``seasonal``: distance from a daily profile (median per time-of-day bucket, learned on
  the training part), in units of the training residuals' MAD. statsmodels' STL is not
  installed and is not causal; this needs nothing beyond numpy.
- ``iforest``: scikit-learn's ``IsolationForest`` (``speechlm[llm]`` extra) on
  (value, first difference, deviation from the trailing mean), fitted on the training part.

A threshold turns scores into a mask: ``fit_threshold`` picks, per group of series, the
quantile level of each series' own training scores that maximises pooled training F1.

>>> s = np.r_[np.zeros(50), 10.0, np.zeros(9)] + np.random.default_rng(0).normal(0, .1, 60)
>>> int(np.argmax(score_series("zscore", np.arange(60.0) * 60, s, n_train=30)))
50
"""

from __future__ import annotations

import numpy as np

from speechlm.core.extras import require
from speechlm.monitor.scoring import prf

__all__ = ["DETECTORS", "score_series", "fit_threshold", "QUANTILES", "fill_forward",
           "threshold_of"]

DETECTORS = ("zscore", "seasonal", "iforest")
QUANTILES = (0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999)
DAY = 86400.0
MIN_HISTORY = 10


def fill_forward(values: np.ndarray) -> np.ndarray:
    """NaN replaced by the last finite value (leading NaN by the first finite one)."""
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    if ok.all():
        return v.copy()
    if not ok.any():
        return np.zeros_like(v)
    idx = np.where(ok, np.arange(v.size), 0)
    np.maximum.accumulate(idx, out=idx)
    out = v[idx]
    out[: np.argmax(ok)] = v[np.argmax(ok)]
    return out


def _trailing_stats(v: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the ``window`` points before each point (fewer at the start)."""
    c1 = np.concatenate([[0.0], np.cumsum(v)])
    c2 = np.concatenate([[0.0], np.cumsum(v * v)])
    i = np.arange(v.size)
    lo = np.maximum(0, i - window)
    n = np.maximum(i - lo, 1)
    mean = (c1[i] - c1[lo]) / n
    var = np.maximum((c2[i] - c2[lo]) / n - mean**2, 0.0)
    mean[0] = v[0]
    return mean, np.sqrt(var)


def score_series(name: str, timestamps: np.ndarray, values: np.ndarray, n_train: int,
                 window: int = 288) -> np.ndarray:
    """(T,) anomaly scores, higher = more anomalous; only ``values[:n_train]`` is fitted on.

    Args:
        name: one of ``DETECTORS``.
        timestamps, values: the whole series, (T,) each (NaN filled forward here).
        n_train: how many leading points are training data.
        window: trailing window in points (``zscore``, ``iforest`` features).
    """
    v = fill_forward(values)
    if name == "zscore":
        mean, std = _trailing_stats(v, window)
        scale = max(float(np.std(v[:n_train])) * 1e-3, 1e-12)
        z = np.abs(v - mean) / (std + scale)
        z[: min(MIN_HISTORY, v.size)] = 0.0  # too little history for a mean and a spread
        return z
    if name == "seasonal":
        step = float(np.median(np.diff(timestamps))) if len(timestamps) > 1 else DAY
        # at least ~5 training points per bucket, so the profile is a median, not a copy
        buckets = int(max(1, min(288, round(DAY / max(step, 1.0)), n_train // 5)))
        phase = ((np.mod(timestamps, DAY) / DAY) * buckets).astype(int) % buckets
        train = v[:n_train]
        profile = np.full(buckets, np.median(train))
        for b in np.unique(phase[:n_train]):
            profile[b] = np.median(train[phase[:n_train] == b])
        resid = v - profile[phase]
        mad = float(np.median(np.abs(resid[:n_train] - np.median(resid[:n_train]))))
        return np.abs(resid) / (1.4826 * mad + max(float(np.std(train)) * 1e-3, 1e-12))
    if name == "iforest":
        ensemble = require("sklearn.ensemble", "llm")
        mean, _ = _trailing_stats(v, window)
        feats = np.stack([v, np.diff(v, prepend=v[0]), v - mean], axis=1)
        model = ensemble.IsolationForest(n_estimators=100, max_samples=min(256, n_train),
                                         random_state=0)
        model.fit(feats[:n_train])
        return -model.score_samples(feats)
    raise ValueError(f"unknown detector {name!r}; choose from {DETECTORS}")


def threshold_of(train_scores: np.ndarray, q: float) -> float:
    """The training score at quantile level ``q`` (a score that occurred: no interpolation
    between the top one or two, which in a short training part are often the anomaly)."""
    return float(np.quantile(train_scores, q, method="lower"))


def fit_threshold(train_scores: list[np.ndarray], train_labels: list[np.ndarray],
                  default: float = 0.995) -> tuple[float, float]:
    """(quantile level, pooled training F1): the level of ``QUANTILES`` that maximises
    pooled point F1 when each series is cut at its own training-score quantile. With no
    labelled training point the level is ``default`` (F1 reported as 0)."""
    if not any(y.any() for y in train_labels):
        return default, 0.0
    best = (default, -1.0)
    for q in QUANTILES:
        tp = fp = fn = 0
        for s, y in zip(train_scores, train_labels, strict=True):
            p = s > threshold_of(s, q)
            tp += int(np.sum(p & y))
            fp += int(np.sum(p & ~y))
            fn += int(np.sum(~p & y))
        f1 = prf(tp, fp, fn)["f1"]
        if f1 > best[1]:
            best = (q, f1)
    return best
