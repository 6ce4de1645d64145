"""Word-confidence calibration of confusion-network posteriors: NCE, ECE, the scale.

A WCN's MBR word carries its bin posterior as a confidence. Whether that number means
anything depends on the acoustic scale the lattice posteriors were computed with (Kaldi's
``--acoustic-scale``, about 1 / LM weight): at scale 1 an N-best lattice of a neural
recognizer is over-confident (every bin near 1.0 while the N-best holds different
sentences). This module measures calibration against references and picks the scale on a
dev set:

- **NCE** (normalised cross entropy, NIST): 1 is perfect, 0 is no better than one constant
  confidence (the word accuracy), below 0 is worse than that.
- **ECE** (expected calibration error): mean |accuracy - confidence| over equal-width
  confidence bins, weighted by the words in each.

Correctness of a hypothesis word comes from its Levenshtein alignment to the reference
(``kaldialign``): a word aligned to the same reference word is correct; substitutions and
insertions are not; deletions have no hypothesis word and so no confidence.

>>> nce([0.9, 0.8, 0.3], [True, True, False]) > 0
True
>>> round(ece([1.0, 1.0, 1.0, 1.0], [True, True, False, False]), 3)
0.5
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from speechlm.lattice.confusion_network import ConfusionNetwork
from speechlm.lattice.lattice import Lattice

__all__ = ["CalibrationReport", "ece", "nce", "scored_words", "tune_am_scale"]

_GAP = "<gap>"  # alignment filler; not a word any recognizer writes


def nce(confidences: Sequence[float], correct: Sequence[bool]) -> float:
    """Normalised cross entropy of word confidences; NaN when all words are right or all
    wrong (no baseline entropy to normalise by)."""
    c = np.clip(np.asarray(confidences, dtype=np.float64), 1e-6, 1 - 1e-6)
    y = np.asarray(correct, dtype=bool)
    if c.shape != y.shape:
        raise ValueError(f"nce: {c.size} confidences for {y.size} words")
    if y.size == 0:
        return float("nan")
    p = y.mean()
    if p in (0.0, 1.0):
        return float("nan")
    h = -(y.sum() * math.log(p) + (~y).sum() * math.log(1 - p))
    return float((h + np.log(c[y]).sum() + np.log(1 - c[~y]).sum()) / h)


def ece(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    """Expected calibration error over ``bins`` equal-width confidence bins (0 is perfect)."""
    c = np.asarray(confidences, dtype=np.float64)
    y = np.asarray(correct, dtype=np.float64)
    if c.shape != y.shape:
        raise ValueError(f"ece: {c.size} confidences for {y.size} words")
    if y.size == 0:
        return float("nan")
    if bins < 1:
        raise ValueError(f"ece: bins must be >= 1, got {bins}")
    idx = np.minimum((c * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(y[m].mean() - c[m].mean())
    return float(total / y.size)


def scored_words(cn: ConfusionNetwork, ref: Sequence[str]) -> tuple[list[float], list[bool]]:
    """(confidence, correct) of each MBR word of ``cn`` against the reference words."""
    import kaldialign

    entries = cn.best_entries()
    words = [e.word for e in entries]
    conf, ok = [], []
    k = 0
    for r, h in kaldialign.align(list(ref), words, _GAP):
        if h == _GAP:  # a deletion: no hypothesis word
            continue
        conf.append(entries[k].posterior)
        ok.append(r == h)
        k += 1
    return conf, ok


@dataclass(frozen=True)
class CalibrationReport:
    """Calibration of one scale: ``am_scale``, NCE, ECE, MBR WER (%) and words scored."""

    am_scale: float
    nce: float
    ece: float
    mbr_wer: float
    words: int


def tune_am_scale(lattices: Sequence[Lattice], refs: Sequence[Sequence[str]],
                  scales: Sequence[float] = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0),
                  *, normalize: Callable[[str], str] | None = None,
                  ) -> tuple[float, list[CalibrationReport]]:
    """Pick the acoustic scale whose WCN word confidences have the best NCE on a dev set.

    Args:
        lattices: one lattice per dev utterance (``None`` is not allowed: decode with
            lattices).
        refs: reference words of each utterance.
        scales: candidate scales.
        normalize: applied to every hypothesis word before scoring (e.g. the toolkit's
            text normaliser); references are taken as given.

    Returns:
        ``(best scale, one report per scale)``. Ties and all-NaN NCE keep the first scale
        with the lowest ECE.

    Raises:
        ValueError: lengths differ, a lattice is missing, or no scale is given.
    """
    if len(lattices) != len(refs):
        raise ValueError(f"tune_am_scale: {len(lattices)} lattices for {len(refs)} references")
    if not scales:
        raise ValueError("tune_am_scale: no scales")
    for i, lat in enumerate(lattices):
        if lat is None:
            raise ValueError(f"tune_am_scale: utterance {i} has no lattice")
    reports = []
    n_ref = sum(len(r) for r in refs)
    for scale in scales:
        conf, ok, errs = [], [], 0
        for lat, ref in zip(lattices, refs, strict=True):
            cn = ConfusionNetwork.from_lattice(lat, am_scale=scale)
            if normalize is not None:
                cn = ConfusionNetwork([[e._replace(word=normalize(e.word) or e.word) for e in b]
                                       for b in cn.bins], utt=cn.utt)
            c, o = scored_words(cn, ref)
            conf += c
            ok += o
            errs += _edit_distance(list(ref), cn.mbr_words())
        reports.append(CalibrationReport(float(scale), nce(conf, ok), ece(conf, ok),
                                         100.0 * errs / max(n_ref, 1), len(conf)))

    def key(r: CalibrationReport) -> tuple[float, float]:
        return (-(r.nce if not math.isnan(r.nce) else -math.inf), r.ece)

    best = min(reports, key=key)
    return best.am_scale, reports


def _edit_distance(ref: list[str], hyp: list[str]) -> int:
    import kaldialign

    return int(kaldialign.edit_distance(ref, hyp)["total"])
