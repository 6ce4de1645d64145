"""Lattice MBR decoding and sausage statistics by the edit-distance recursion of

    H. Xu, D. Povey, L. Mangu, J. Zhu, "Minimum Bayes Risk decoding and system combination
    based on a recursion for edit distance", Computer Speech & Language 25(4), 2011,

the algorithm of Kaldi's ``lattice-mbr-decode`` (``lat/sausages.cc``), written here over
numpy. Given a hypothesis ``R`` with epsilons between and around its words
(``<eps> r1 <eps> r2 ... <eps>``, Q positions), a forward pass over the topologically
sorted lattice (Fig. 5 of the paper) computes for each state ``n`` the expected edit
distance ``alpha_dash[n, q]`` between the lattice prefixes ending at ``n`` and ``R[:q]``,
where each arc picks its cheapest alignment (substitute/match, insert, or delete ``r_q``);
a backward pass pushes the posterior mass through those alignment choices and gives
``gamma[q, w]``: the posterior that position ``q`` of ``R`` aligns with word ``w`` (or with
epsilon, a deletion). Each position's ``gamma`` sums to 1: they are the confusion-network
bins. ``R`` is then replaced by the best word of every bin (Fig. 6) and the passes repeat
until ``R`` no longer changes; the final ``R`` is the MBR (minimum expected word error)
hypothesis. Word times are posterior-weighted averages of arc start/end times (App. C).

The passes go level by level (a state's level is its longest arc distance from the
start): all K arcs entering one level form a (K, Q+1) matrix. The recursion along ``q``
(deleting ``r_q`` after the arc) is a running minimum,
``arc[q] = min(b[q], arc[q-1] + l(eps, r_q))`` = ``C[q] + cummin(b - C)[q]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from speechlm.lattice import _mbr_compiled
from speechlm.lattice.lattice import EPS

if TYPE_CHECKING:
    from speechlm.lattice.lattice import Lattice

DELTA = 1.0e-5  # tiny cost on arcs that insert a word: prefer aligning a word to a word


@dataclass
class MbrStats:
    """Result of :func:`mbr_decode`.

    Attributes:
        words: The MBR hypothesis (no epsilons).
        vocab: Word of each column of ``gamma``; column 0 is ``"<eps>"``.
        gamma: (Q, V) posterior of each word in each bin (rows sum to 1).
        start: (Q, V) posterior-weighted start time of each word in each bin (seconds).
        end: (Q, V) same for end times.
        expected_errors: Expected edit distance between the lattice and the
            hypothesis of the last pass.
        iterations: Passes run.
    """

    words: list[str]
    vocab: list[str]
    gamma: np.ndarray
    start: np.ndarray
    end: np.ndarray
    expected_errors: float
    iterations: int


class _Graph:
    """The lattice as arrays with one super-final state, axes ``[state][arc]``."""

    def __init__(self, lat: Lattice, am_scale: float, lm_scale: float):
        lat = lat.connect()  # states renumbered in topological order, start = 0
        self.vocab = [EPS, *sorted(lat.words())]
        wid = {w: i for i, w in enumerate(self.vocab)}
        n = lat.num_states
        arcs = lat.arcs
        src = [a.src for a in arcs]
        dst = [a.dst for a in arcs]
        word = [wid[a.word] for a in arcs]
        loglike = [am_scale * a.am_score + lm_scale * a.lm_score for a in arcs]
        tb = [a.start for a in arcs]
        te = [a.end for a in arcs]
        for s, (am, lm) in lat.finals.items():  # final weights -> epsilon arcs
            t = lat.state_times[s]
            src.append(s)
            dst.append(n)
            word.append(0)
            loglike.append(am_scale * am + lm_scale * lm)
            tb.append(t)
            te.append(t)
        self.num_states = n + 1
        self.times = np.array([*lat.state_times, lat.duration])  # (N,)
        self.src = np.array(src, dtype=np.int64)
        self.word = np.array(word, dtype=np.int64)
        self.loglike = np.array(loglike, dtype=np.float64)
        self.tb = np.array(tb, dtype=np.float64)
        self.te = np.array(te, dtype=np.float64)
        self.dst = np.array(dst, dtype=np.int64)
        # Level of a state = longest arc distance from the start. States of one level
        # depend only on lower levels, so a pass handles a whole level at once.
        # States are numbered topologically (connect) and the super-final is last.
        # One relaxation per arc in source order (every arc into a state comes from a
        # lower-numbered state, so a state's depth is final before its arcs are read),
        # on Python ints: a numpy call per state cost ~40 % of the compiled MBR passes.
        by_src = np.argsort(self.src, kind="stable")
        depth_l = [0] * self.num_states
        for s, d in zip(self.src[by_src].tolist(), self.dst[by_src].tolist(), strict=True):
            if depth_l[s] >= depth_l[d]:
                depth_l[d] = depth_l[s] + 1
        depth = np.array(depth_l, dtype=np.int64)
        arc_level = depth[self.dst]
        order = np.lexsort((self.dst, arc_level))  # arcs by level, then end state
        lb = np.searchsorted(arc_level[order], np.arange(depth.max() + 2))
        # levels[i]: (arc ids sorted by end state, segment starts, end states) of level i+1
        self.levels = []
        for i in range(1, depth.max() + 1):
            k = order[lb[i]:lb[i + 1]]
            d = self.dst[k]
            starts = np.flatnonzero(np.concatenate([[True], d[1:] != d[:-1]]))
            self.levels.append((k, starts, d[starts]))


def _acc_stats(g: _Graph, r: np.ndarray):
    """One forward-backward pass (Fig. 5) for the epsilon-normalised hypothesis ``r``.

    The compiled loops (``_mbr_compiled``, numba) when numba is installed and the graph
    has at least ``_mbr_compiled.MIN_CELLS`` arcs x positions: 6-15x faster there, same
    expected costs and choices, gamma and times to ~1e-13; else the numpy pass.

    Returns:
        ``(gamma, tau_b, tau_e, expected_errors)``; gamma (Q+1, V) with row 0 unused.
    """
    if _mbr_compiled.HAS_NUMBA and len(g.src) * (len(r) + 1) >= _mbr_compiled.MIN_CELLS:
        return _mbr_compiled.acc_stats(g, r, DELTA)
    return _acc_stats_numpy(g, r)


def _acc_stats_numpy(g: _Graph, r: np.ndarray):
    """``_acc_stats`` in numpy, level by level: the reference the compiled pass must match."""
    big_n, q_len, v = g.num_states, len(r), len(g.vocab)
    l0r = (r != 0).astype(np.float64)  # (Q,) cost of deleting r_q
    c = np.concatenate([[0.0], np.cumsum(l0r)])  # (Q+1,)
    alpha = np.full(big_n, -np.inf)
    alpha[0] = 0.0
    ad = np.zeros((big_n, q_len + 1))  # alpha_dash: expected edit distance
    ad[0] = c
    arc_post = np.zeros(len(g.src))  # p(arc | its end state)
    choice = []  # per level: (K, Q) alignment choice 1 (sub), 2 (ins), 3 (del r_q)
    for k, starts, ends in g.levels:
        s, w = g.src[k], g.word[k]
        scores = alpha[s] + g.loglike[k]  # (K,)
        top = np.maximum.reduceat(scores, starts)
        seg = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(k))))
        alpha[ends] = top + np.log(np.add.reduceat(np.exp(scores - top[seg]), starts))
        post = np.exp(scores - alpha[ends][seg])  # (K,)
        arc_post[k] = post
        a_s = ad[s]  # (K, Q+1)
        ins = (w != 0).astype(np.float64)[:, None] + DELTA  # arc word inserted
        a1 = a_s[:, :-1] + (w[:, None] != r[None, :])  # (K, Q) substitute or match r_q
        a2 = a_s[:, 1:] + ins  # (K, Q) insert the arc's word after r_q
        b = np.concatenate([a_s[:, :1] + ins, np.minimum(a1, a2)], axis=1)  # (K, Q+1)
        arc = c + np.minimum.accumulate(b - c, axis=1)  # then delete r_q's: (K, Q+1)
        a3 = arc[:, :-1] + l0r
        choice.append(np.where(a1 <= a2, np.where(a1 <= a3, 1, 3),
                               np.where(a2 <= a3, 2, 3)).astype(np.int8))
        ad[ends] = np.add.reduceat(post[:, None] * arc, starts, axis=0)
    expected = float(ad[big_n - 1, q_len])

    bd = np.zeros((big_n, q_len + 1))  # beta_dash
    bd[big_n - 1, q_len] = 1.0
    gamma = np.zeros((q_len + 1, v))
    tau_b = np.zeros((q_len + 1, v))
    tau_e = np.zeros((q_len + 1, v))
    qs = np.arange(q_len + 1)
    for (k, _, _), ch in zip(reversed(g.levels), reversed(choice), strict=True):
        s, d, w = g.src[k], g.dst[k], g.word[k]
        x = arc_post[k][:, None] * bd[d]  # (K, Q+1)
        # beta_arc[q] = x[q] + beta_arc[q+1] when position q+1 was a deletion (choice 3):
        # a segmented reverse cumulative sum.
        carry = np.concatenate([ch == 3, np.zeros((len(k), 1), bool)], axis=1)  # (K, Q+1)
        stop = np.where(carry, q_len + 1, qs[None, :])
        run_end = np.minimum.accumulate(stop[:, ::-1], axis=1)[:, ::-1]  # (K, Q+1)
        rev = np.concatenate([np.cumsum(x[:, ::-1], axis=1)[:, ::-1],
                              np.zeros((len(k), 1))], axis=1)  # (K, Q+2)
        beta_arc = rev[:, :-1] - np.take_along_axis(rev, run_end + 1, axis=1)  # (K, Q+1)
        bq = beta_arc[:, 1:]  # positions 1..Q
        sub, ins, dele = ch == 1, ch == 2, ch == 3
        to_src = np.zeros_like(beta_arc)
        to_src[:, :-1] += np.where(sub, bq, 0.0)
        to_src[:, 1:] += np.where(ins, bq, 0.0)
        to_src[:, 0] += beta_arc[:, 0]
        # Scatter-adds by bincount (np.add.at is many times slower).
        src_ids, inv = np.unique(s, return_inverse=True)
        flat = (inv[:, None] * (q_len + 1) + qs[None, :]).ravel()
        bd[src_ids] += np.bincount(flat, to_src.ravel(),
                                   len(src_ids) * (q_len + 1)).reshape(-1, q_len + 1)
        ki, qi = np.nonzero(sub)
        vals = bq[ki, qi]
        cell = (qi + 1) * v + w[ki]
        size = (q_len + 1) * v
        gamma += np.bincount(cell, vals, size).reshape(q_len + 1, v)
        tau_b += np.bincount(cell, vals * g.tb[k][ki], size).reshape(q_len + 1, v)
        tau_e += np.bincount(cell, vals * g.te[k][ki], size).reshape(q_len + 1, v)
        del_mass = np.where(dele, bq, 0.0)  # (K, Q): deletions happen at the end state
        gamma[1:, 0] += del_mass.sum(axis=0)
        t_end = g.times[d][:, None] * del_mass
        tau_b[1:, 0] += t_end.sum(axis=0)
        tau_e[1:, 0] += t_end.sum(axis=0)
    # Positions deleted before the first arc (line 29 of Fig. 5).
    lead = np.cumsum(bd[0, 1:][::-1])[::-1]  # (Q,)
    gamma[1:, 0] += lead
    tau_b[1:, 0] += lead * g.times[0]
    tau_e[1:, 0] += lead * g.times[0]
    return gamma, tau_b, tau_e, expected


def _normalize_eps(words: list[int]) -> np.ndarray:
    core = [w for w in words if w != 0]
    out = [0] * (2 * len(core) + 1)
    out[1::2] = core
    return np.array(out, dtype=np.int64)


def mbr_decode(lat: Lattice, am_scale: float = 1.0, lm_scale: float = 1.0,
               max_iterations: int = 100) -> MbrStats:
    """MBR hypothesis and confusion-network statistics of a lattice (Xu et al. 2011).

    Args:
        lat: The lattice (epsilon arcs allowed).
        am_scale: Acoustic scale for posteriors (Kaldi's ``--acoustic-scale``).
        lm_scale: LM scale for posteriors.
        max_iterations: Stop after this many passes even if ``R`` still changes.

    Returns:
        :class:`MbrStats` for the last pass.
    """
    g = _Graph(lat, am_scale, lm_scale)
    wid = {w: i for i, w in enumerate(g.vocab)}
    hyp = [wid[w] for w in lat.best_path(am_scale, lm_scale).words]
    it = 0
    while True:
        it += 1
        r = _normalize_eps(hyp)
        gamma, tau_b, tau_e, expected = _acc_stats(g, r)
        best = gamma[1:].argmax(axis=1)  # (Q,)
        # Keep the current word where it ties with the best, so the loop ends.
        cur = gamma[1:][np.arange(len(r)), r]
        new = np.where(cur >= gamma[1:][np.arange(len(r)), best], r, best)
        if np.array_equal(new, r) or it >= max_iterations:
            break
        hyp = new.tolist()
    with np.errstate(invalid="ignore", divide="ignore"):
        start = np.where(gamma > 0, tau_b / gamma, 0.0)[1:]
        end = np.where(gamma > 0, tau_e / gamma, 0.0)[1:]
    return MbrStats([g.vocab[i] for i in new if i != 0], g.vocab, gamma[1:], start, end,
                    expected, it)
