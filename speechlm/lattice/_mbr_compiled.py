"""The forward-backward pass of ``mbr._acc_stats`` as one compiled loop (numba).

The numpy pass handles a level's arcs as (K, Q+1) arrays in ~60 calls per level; at
the sizes of real lattices the time is those array passes, not the arithmetic. Here each
arc is one loop over its Q+1 positions. The arc posteriors and the per-state sums of
the forward pass stay in numpy (see ``acc_stats``), so the expected costs and the
alignment choices are the reference's bit for bit; the backward pass sums in another
order (a running sum for a deletion run, arcs added one by one), so gamma and the times
agree to float rounding (~1e-12). ``mbr._acc_stats_numpy`` stays the reference
the tests compare against; ``mbr._acc_stats`` uses this one when numba is installed.
"""

from __future__ import annotations

import importlib.util

import numpy as np

# numba is optional (the numpy pass is used without it) and imported on first use only:
# importing it costs ~0.5 s, compiling (first call in a process; then cached on disk
# beside this file) ~1 s, so lattices too small to gain from it never load it.
HAS_NUMBA = importlib.util.find_spec("numba") is not None
MIN_CELLS = 200_000  # arcs x (Q + 1) from which mbr._acc_stats uses the compiled pass
_kernels = None


def _forward_level(src, word, post, ad, r, c, l0r, delta, rows, choice):
    """``rows[i] = post[i] * arc_i`` (K, Q+1) and the alignment choices of one level."""
    q_len = r.shape[0]
    arc = np.empty(q_len + 1)
    for i in range(src.shape[0]):
        s, w = src[i], word[i]
        ins = (1.0 if w != 0 else 0.0) + delta
        m = (ad[s, 0] + ins) - c[0]
        arc[0] = c[0] + m
        for q in range(q_len):
            x1 = ad[s, q] + (1.0 if w != r[q] else 0.0)
            x2 = ad[s, q + 1] + ins
            d = (x1 if x1 < x2 else x2) - c[q + 1]
            if d < m:
                m = d
            arc[q + 1] = c[q + 1] + m
        for q in range(q_len):
            x1 = ad[s, q] + (1.0 if w != r[q] else 0.0)
            x2 = ad[s, q + 1] + ins
            x3 = arc[q] + l0r[q]
            if x1 <= x2:
                choice[i, q] = 1 if x1 <= x3 else 3
            else:
                choice[i, q] = 2 if x2 <= x3 else 3
        for q in range(q_len + 1):
            rows[i, q] = post[i] * arc[q]


def _backward(src, dst, word, post, tb, te, times, choice, bd, vocab):
    """All levels of the backward pass, arcs in reverse level order."""
    q_len = choice.shape[1]
    gamma = np.zeros((q_len + 1, vocab))
    tau_b = np.zeros((q_len + 1, vocab))
    tau_e = np.zeros((q_len + 1, vocab))
    beta = np.empty(q_len + 1)
    for i in range(src.shape[0] - 1, -1, -1):
        s, d, w, p = src[i], dst[i], word[i], post[i]
        beta[q_len] = p * bd[d, q_len]
        for q in range(q_len - 1, -1, -1):
            beta[q] = p * bd[d, q]
            if choice[i, q] == 3:  # position q+1 deleted: its mass runs on
                beta[q] += beta[q + 1]
        bd[s, 0] += beta[0]
        for q in range(q_len):
            bq = beta[q + 1]
            ch = choice[i, q]
            if ch == 1:
                bd[s, q] += bq
                gamma[q + 1, w] += bq
                tau_b[q + 1, w] += bq * tb[i]
                tau_e[q + 1, w] += bq * te[i]
            elif ch == 2:
                bd[s, q + 1] += bq
            else:
                gamma[q + 1, 0] += bq
                tau_b[q + 1, 0] += times[d] * bq
                tau_e[q + 1, 0] += times[d] * bq
    return gamma, tau_b, tau_e


def _compiled():
    """``(forward_level, backward)`` compiled by numba (once per process)."""
    global _kernels
    if _kernels is None:
        import numba

        _kernels = (numba.njit(cache=True)(_forward_level), numba.njit(cache=True)(_backward))
    return _kernels


def arc_posteriors(g) -> list[np.ndarray]:
    """p(arc | its end state) per level, by the numpy pass's own operations.

    They do not depend on the hypothesis, so they are computed once per graph, and with
    numpy's exp/log and summation order: the alignment choices compare expected costs
    that are often exactly tied (a word aligned to an epsilon bin or the next one), and
    a last-bit difference in a posterior would break such ties the other way.
    """
    alpha = np.full(g.num_states, -np.inf)
    alpha[0] = 0.0
    posts = []
    for k, starts, ends in g.levels:
        scores = alpha[g.src[k]] + g.loglike[k]  # (K,)
        top = np.maximum.reduceat(scores, starts)
        seg = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(k))))
        alpha[ends] = top + np.log(np.add.reduceat(np.exp(scores - top[seg]), starts))
        posts.append(np.exp(scores - alpha[ends][seg]))
    return posts


def flat_levels(g):
    """Per-level arc arrays and posteriors, and all arcs in level order (cached on ``g``)."""
    if getattr(g, "_flat", None) is None:
        posts = arc_posteriors(g)
        per_level = [(g.src[k], g.word[k], post, starts, ends)
                     for (k, starts, ends), post in zip(g.levels, posts, strict=True)]  # fmt: skip
        ks = [k for k, _, _ in g.levels]
        karr = np.concatenate(ks) if ks else np.zeros(0, np.int64)
        post = np.concatenate(posts) if posts else np.zeros(0)
        g._flat = (per_level, (g.src[karr], g.dst[karr], g.word[karr], post,
                               g.tb[karr], g.te[karr]))  # fmt: skip
    return g._flat


def acc_stats(g, r: np.ndarray, delta: float):
    """``mbr._acc_stats`` through the compiled loops; same return value.

    Forward: per level, the compiled loop gives ``post * arc`` rows and the choices, and
    numpy sums the rows per end state (``np.add.reduceat``, the reference's own summation
    order), so the expected costs, and the ties the choices break, are bit for bit the
    reference's. Backward: one compiled loop over all arcs.
    """
    forward_level, backward = _compiled()
    per_level, (src, dst, word, post, tb, te) = flat_levels(g)
    r = np.ascontiguousarray(r, dtype=np.int64)
    q_len = len(r)
    l0r = (r != 0).astype(np.float64)
    c = np.concatenate([[0.0], np.cumsum(l0r)])
    ad = np.zeros((g.num_states, q_len + 1))
    ad[0] = c
    choice = np.empty((len(src), q_len), dtype=np.int8)
    at = 0
    for s_l, w_l, p_l, starts, ends in per_level:
        rows = np.empty((len(s_l), q_len + 1))
        forward_level(s_l, w_l, p_l, ad, r, c, l0r, delta, rows, choice[at : at + len(s_l)])
        ad[ends] = np.add.reduceat(rows, starts, axis=0)
        at += len(s_l)
    expected = float(ad[g.num_states - 1, q_len])
    bd = np.zeros((g.num_states, q_len + 1))
    bd[g.num_states - 1, q_len] = 1.0
    times = np.asarray(g.times, dtype=np.float64)
    gamma, tau_b, tau_e = backward(src, dst, word, post, tb, te, times, choice, bd,
                                   len(g.vocab))  # fmt: skip
    # Positions deleted before the first arc (line 29 of Fig. 5), as in the numpy pass.
    lead = np.cumsum(bd[0, 1:][::-1])[::-1]  # (Q,)
    gamma[1:, 0] += lead
    tau_b[1:, 0] += lead * g.times[0]
    tau_e[1:, 0] += lead * g.times[0]
    return gamma, tau_b, tau_e, expected
