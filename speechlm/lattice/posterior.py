"""Forward-backward over a lattice in OpenFst (through pynini).

The lattice becomes an OpenFst acceptor whose arc ``k`` carries label ``k + 1`` and cost
``-(am_scale * am_score + lm_scale * lm_score)``; final weights likewise. Forward and
backward distances come from ``pynini.shortestdistance`` in the log semiring (posteriors)
or the tropical semiring (Viterbi scores for pruning), so the semiring maths is OpenFst's;
this module only combines ``alpha[src] + w + beta[dst]`` per arc.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pynini

    from speechlm.lattice.lattice import Lattice


def to_fst(lat: Lattice, am_scale: float = 1.0, lm_scale: float = 1.0,
           semiring: str = "log", olabels: list[int] | None = None) -> pynini.Fst:
    """The lattice as an OpenFst FST over the same state ids.

    Args:
        lat: The lattice.
        am_scale: Acoustic scale.
        lm_scale: LM scale.
        semiring: ``"log"`` or ``"tropical"``.
        olabels: Output label of each arc (default: the input label ``k + 1``, an
            acceptor); e.g. word ids for N-best by word sequence.

    Returns:
        A pynini ``Fst``; arc ``k`` of ``lat`` has input label ``k + 1``.
    """
    import pynini

    arc_type = "log" if semiring == "log" else "standard"
    wtype = "log" if semiring == "log" else "tropical"
    f = pynini.Fst(arc_type=arc_type)
    f.add_states(lat.num_states)
    f.set_start(lat.start)
    for k, a in enumerate(lat.arcs):
        cost = -(am_scale * a.am_score + lm_scale * a.lm_score)
        ol = k + 1 if olabels is None else olabels[k]
        f.add_arc(a.src, pynini.Arc(k + 1, ol, pynini.Weight(wtype, cost), a.dst))
    for s, (am, lm) in lat.finals.items():
        f.set_final(s, pynini.Weight(wtype, -(am_scale * am + lm_scale * lm)))
    return f


def _distances(f: pynini.Fst, n: int) -> tuple[np.ndarray, np.ndarray]:
    import pynini

    def floats(ws) -> np.ndarray:
        d = np.full(n, np.inf)
        for i, w in enumerate(ws):
            d[i] = float(w)
        return d

    # -log of forward / backward sums (or Viterbi costs): (S,), inf where unreachable.
    return floats(pynini.shortestdistance(f)), floats(pynini.shortestdistance(f, reverse=True))


def forward_backward(lat: Lattice, am_scale: float = 1.0, lm_scale: float = 1.0,
                     semiring: str = "log") -> tuple[np.ndarray, np.ndarray, float]:
    """Forward and backward log scores per state, and the total.

    Args:
        lat: The lattice.
        am_scale: Acoustic scale.
        lm_scale: LM scale.
        semiring: ``"log"`` (sums over paths) or ``"tropical"`` (best path).

    Returns:
        ``(alpha, beta, total)``: ``alpha`` (S,) log score of reaching each state from
        the start, ``beta`` (S,) log score from each state to the end (final weights
        included), ``total`` the log score of the whole lattice; ``-inf`` where a state is
        unreachable. Natural log, higher is better.
    """
    f = to_fst(lat, am_scale, lm_scale, semiring)
    alpha, beta = _distances(f, lat.num_states)
    total = -beta[lat.start]
    if not np.isfinite(total):
        raise ValueError(f"lattice {lat.utt!r}: no path with a finite score")
    return -alpha, -beta, float(total)


def _through(lat: Lattice, alpha: np.ndarray, beta: np.ndarray, am_scale: float,
             lm_scale: float) -> np.ndarray:
    src = np.fromiter((a.src for a in lat.arcs), dtype=np.int64, count=lat.num_arcs)
    dst = np.fromiter((a.dst for a in lat.arcs), dtype=np.int64, count=lat.num_arcs)
    w = np.fromiter((am_scale * a.am_score + lm_scale * a.lm_score for a in lat.arcs),
                    dtype=np.float64, count=lat.num_arcs)
    return alpha[src] + w + beta[dst]  # (A,)


def arc_posteriors(lat: Lattice, am_scale: float = 1.0, lm_scale: float = 1.0) -> np.ndarray:
    """Posterior probability of each arc: the share of the lattice's path mass through it.

    ``post[k] = exp(alpha[src] + am_scale*am + lm_scale*lm + beta[dst] - total)`` with
    ``alpha``, ``beta`` from log-semiring shortest distances (OpenFst).

    Args:
        lat: The lattice.
        am_scale: Acoustic scale (Kaldi's ``--acoustic-scale``, e.g. 0.1 for HMM models).
        lm_scale: LM scale.

    Returns:
        (num_arcs,) float64 posteriors in [0, 1]; 0 for arcs off every complete path.
    """
    alpha, beta, total = forward_backward(lat, am_scale, lm_scale, "log")
    with np.errstate(invalid="ignore"):
        post = np.exp(_through(lat, alpha, beta, am_scale, lm_scale) - total)
    return np.clip(np.nan_to_num(post, nan=0.0), 0.0, 1.0)


def final_posteriors(lat: Lattice, am_scale: float = 1.0,
                     lm_scale: float = 1.0) -> dict[int, float]:
    """Posterior of ending at each final state (sums to 1 over final states)."""
    alpha, _, total = forward_backward(lat, am_scale, lm_scale, "log")
    return {s: float(np.exp(alpha[s] + am_scale * am + lm_scale * lm - total))
            if np.isfinite(alpha[s]) else 0.0 for s, (am, lm) in lat.finals.items()}


def arc_best_scores(lat: Lattice, am_scale: float = 1.0,
                    lm_scale: float = 1.0) -> tuple[np.ndarray, float]:
    """Score of the best complete path through each arc (tropical forward-backward).

    Returns:
        ``(through, best)``: (num_arcs,) best path score through each arc (``-inf`` for
        dead arcs) and the best path score of the lattice.
    """
    alpha, beta, best = forward_backward(lat, am_scale, lm_scale, "tropical")
    with np.errstate(invalid="ignore"):
        through = _through(lat, alpha, beta, am_scale, lm_scale)
    return np.nan_to_num(through, nan=-np.inf), best
