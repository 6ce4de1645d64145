"""Oracle word errors: the fewest errors any hypothesis in a lattice, N-best list or
confusion network makes against a reference.

Each function returns ``(errors, ref_len, words)``: the minimum edit distance
(substitutions + deletions + insertions), the reference length and one hypothesis that
attains it. The lattice oracle is a Levenshtein DP over the topologically sorted lattice:
``D[n][j]`` = fewest errors of any path prefix ending at state ``n`` against ``ref[:j]``;
a confusion network is scored as the chain lattice of its bins (one pick per bin,
epsilon allowed).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import kaldialign
import numpy as np

from speechlm.lattice.lattice import EPS

if TYPE_CHECKING:
    from speechlm.lattice.confusion_network import ConfusionNetwork
    from speechlm.lattice.lattice import Lattice

_DEL = -1  # backpointer: ref word j-1 deleted at the same state


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Levenshtein distance in words (kaldialign, as ``compute-wer``)."""
    return int(kaldialign.edit_distance(list(ref), list(hyp))["total"])


def lattice_oracle(lat: Lattice, ref: Sequence[str]) -> tuple[int, int, list[str]]:
    """Oracle errors of a lattice: min over all its paths of the edit distance to ``ref``.

    Args:
        lat: The lattice.
        ref: Reference words.

    Returns:
        ``(errors, len(ref), best_words)``.
    """
    lat = lat.connect()  # topological numbering, start = 0
    ref = list(ref)
    big_j = len(ref)
    js = np.arange(big_j + 1)
    inf = np.iinfo(np.int64).max // 4
    cost = np.full((lat.num_states, big_j + 1), inf, dtype=np.int64)
    bp_arc = np.full((lat.num_states, big_j + 1), _DEL, dtype=np.int64)
    bp_j = np.zeros((lat.num_states, big_j + 1), dtype=np.int64)
    cost[0] = js
    bp_j[0] = js - 1
    out = lat.out_arcs
    ref_arr = np.array(ref, dtype=object)
    for n in range(lat.num_states):
        # Deleting reference words without moving in the lattice: D[j] <- D[j-1] + 1.
        closed = js + np.minimum.accumulate(cost[n] - js)
        moved = closed < cost[n]
        cost[n] = closed
        bp_arc[n][moved] = _DEL
        bp_j[n][moved] = js[moved] - 1
        for k in out[n]:
            a = lat.arcs[k]
            if a.word == EPS:
                cand, from_j = cost[n].copy(), js.copy()
            else:
                cand = cost[n] + 1  # the arc's word inserted
                from_j = js.copy()
                sub = cost[n][:-1] + (ref_arr != a.word).astype(np.int64)  # (J,)
                better = sub <= cand[1:]
                cand[1:] = np.where(better, sub, cand[1:])
                from_j[1:] = np.where(better, js[:-1], js[1:])
            upd = cand < cost[a.dst]
            cost[a.dst][upd] = cand[upd]
            bp_arc[a.dst][upd] = k
            bp_j[a.dst][upd] = from_j[upd]
    final = min(lat.finals, key=lambda s: cost[s][big_j])
    errors = int(cost[final][big_j])
    words: list[str] = []
    n, j = final, big_j
    while not (n == 0 and j == 0):
        k = int(bp_arc[n][j])
        if k == _DEL:
            j -= 1
            continue
        a = lat.arcs[k]
        if a.word != EPS:
            words.append(a.word)
        n, j = a.src, int(bp_j[n][j])
    return errors, big_j, words[::-1]


def nbest_oracle(hyps: Iterable[Sequence[str]], ref: Sequence[str]
                 ) -> tuple[int, int, list[str]]:
    """Oracle errors of an N-best list (word sequences or ``Path`` objects)."""
    best: tuple[int, list[str]] | None = None
    for h in hyps:
        words = list(getattr(h, "words", h))
        e = edit_distance(ref, words)
        if best is None or e < best[0]:
            best = (e, words)
    if best is None:
        return len(ref), len(ref), []
    return best[0], len(ref), best[1]


def cn_oracle(cn: ConfusionNetwork, ref: Sequence[str]) -> tuple[int, int, list[str]]:
    """Oracle errors of a confusion network: one entry (or epsilon) picked per bin."""
    if not cn.bins:
        return len(ref), len(ref), []
    return lattice_oracle(cn.to_lattice(), ref)
