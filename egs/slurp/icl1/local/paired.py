"""Paired statistics over the same test utterances: exact McNemar tests and a bootstrap
interval of the gap closed by an input, averaged over several test sets.

A test set of 100 sentences moves by whole utterances, so a gap closed of 48% against a goal
of 50% means nothing without its spread: these put the spread next to the number.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from speechlm.llm.serialize import read_utt2intent


def correct(ref: Path, pred_dirs: dict[str, Path]) -> dict[str, np.ndarray] | None:
    """Per input, whether each reference utterance (``ref``: utt2intent, in its order) is
    classified right by ``pred_dirs[input]/utt2intent``; None when a file is missing."""
    files = [ref, *(d / "utt2intent" for d in pred_dirs.values())]
    if not all(f.is_file() for f in files):
        return None
    truth = read_utt2intent(ref)
    out = {}
    for kind, d in pred_dirs.items():
        pred = read_utt2intent(d / "utt2intent")
        out[kind] = np.array([pred.get(u) == t for u, t in truth.items()], dtype=bool)
    return out


def wins_losses(ref: Path, base: Path, new: Path) -> tuple[int, int] | None:
    """Utterances ``new`` classifies right and ``base`` wrong, and the other way round
    (``utt2intent`` of each prediction dir against ``ref``); None when a file is missing."""
    ok = correct(ref, {"base": base, "new": new})
    return None if ok is None else won_lost(ok["base"], ok["new"])


def won_lost(base: np.ndarray, new: np.ndarray) -> tuple[int, int]:
    """Utterances right in ``new`` and wrong in ``base``, and the other way round."""
    return int((new & ~base).sum()), int((base & ~new).sum())


def mcnemar(won: int, lost: int) -> str:
    from scipy.stats import binomtest

    p = binomtest(won, won + lost).pvalue if won + lost else 1.0
    # two decimals hide how small a small p is (0.004 and 1e-9 both read 0.00)
    return f"+{won}/-{lost} (p={p:.2f})" if p >= 0.01 else f"+{won}/-{lost} (p={p:.1g})"


def bootstrap_gap(rows: list[dict[str, np.ndarray]], kind: str, resamples: int = 2000,
                  seed: int = 0, min_gap: float = 3.0) -> dict:
    """Percentile 95% intervals of ``kind`` - 1-best (points) and of the gap closed,
    (mean kind - mean 1-best) / (mean oracle - mean 1-best), the means over ``rows`` (one
    dict of per-utterance correctness per test set, keys ``1best``, ``kind``, ``oracle``).
    Each resample redraws every set's utterances with replacement, the same draw for the
    three inputs (paired). Resamples whose mean oracle is under ``min_gap`` points above the
    mean 1-best have no gap closed (as in the tables) and are counted in ``no_gap``."""
    rng = np.random.default_rng(seed)
    names = ("1best", kind, "oracle")
    total = np.zeros((3, resamples))
    for r in rows:
        c = np.stack([r[k] for k in names]).astype(float)  # 3 x utterances
        idx = rng.integers(0, c.shape[1], size=(resamples, c.shape[1]))
        total += 100.0 * c[:, idx].mean(axis=-1)
    one, new, orc = total / len(rows)
    diff = new - one
    has_gap = orc - one >= min_gap
    closed = (diff[has_gap] / (orc - one)[has_gap]) if has_gap.any() else np.array([np.nan])
    return {"diff": tuple(np.percentile(diff, [2.5, 97.5])),
            "closed": tuple(np.percentile(closed, [2.5, 97.5])),
            "closed_at_least_half": float((closed >= 0.5).mean()),
            "no_gap": int((~has_gap).sum()), "resamples": resamples}
