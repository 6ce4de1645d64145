"""An N-best list as a word lattice, for recognisers that give no lattice (Whisper,
Moonshine), so that the lattice tools (``ConfusionNetwork.from_lattice``, MBR, the lattice
and WCN oracles, N-best by shortest path) work for every backend.

Each hypothesis is one path, axes ``[state][arc]``; word arcs of a common prefix are shared
(a prefix tree), and the last word of every hypothesis has its own arc into its own final
state, which carries the hypothesis score as ``am_score`` (``lm_score`` 0). So the path
of hypothesis ``i`` scores exactly ``score_i``, and with ``am_scale = s`` its posterior is
``softmax(s * scores)[i]`` (:func:`nbest_posteriors`); two hypotheses with the same words
stay two paths, so their posterior mass adds up. An empty hypothesis is an ``<eps>`` arc.

Times: the words of the first hypothesis take ``word_times`` when given; the states it
shares with the others keep those times; every other word is spread evenly between the
time of the state where its hypothesis leaves the shared prefix and ``duration``.

>>> from speechlm.core.hypothesis import Hypothesis
>>> hyps = [Hypothesis("ten of clubs", -1.0), Hypothesis("ten of cups", -2.0)]
>>> lat = lattice_from_nbest(hyps, word_times=[(0.1, 0.4), (0.4, 0.5), (0.5, 0.9)],
...                          utt="001")
>>> lat.num_arcs, sorted(lat.words())
(4, ['clubs', 'cups', 'of', 'ten'])
>>> nbest_posteriors([-1.0, -2.0], 1.0).round(3).tolist()
[0.731, 0.269]
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from speechlm.core.hypothesis import Hypothesis
from speechlm.lattice.lattice import EPS, Arc, Lattice

__all__ = ["concat_lattices", "lattice_from_nbest", "nbest_posteriors"]


def nbest_posteriors(scores: Sequence[float], am_scale: float = 1.0) -> np.ndarray:
    """Posterior of each hypothesis: ``softmax(am_scale * scores)``.

    Args:
        scores: (N,) natural-log hypothesis scores.
        am_scale: Scale applied to the scores before the softmax.

    Returns:
        (N,) posteriors summing to 1.
    """
    x = am_scale * np.asarray(scores, dtype=np.float64)
    x = np.exp(x - x.max())
    return x / x.sum()


def lattice_from_nbest(hyps: Sequence[Hypothesis], *, utt: str | None = None,
                       word_times: Sequence[tuple[float, float]] | None = None,
                       start_time: float = 0.0, duration: float | None = None) -> Lattice:
    """Build the prefix-tree lattice of an N-best list (see the module docstring).

    Args:
        hyps: Hypotheses, best first; words are ``hyp.text.split()``, scores natural log.
        utt: Utterance id (errors and writers use it).
        word_times: ``(start, end)`` seconds of each word of ``hyps[0]``.
        start_time: Time of the start state, in seconds.
        duration: End time used to spread words without times (default: the end of the
            last timed word, else ``start_time``).

    Returns:
        The lattice; raw scores (scale them with ``am_scale`` when taking posteriors).

    Raises:
        ValueError: no hypotheses, a non-finite score, or ``word_times`` whose length is
            not the number of words of ``hyps[0]`` (the message names ``utt``).
    """
    if not hyps:
        raise ValueError(f"utterance {utt!r}: no hypotheses to build a lattice from")
    words0 = hyps[0].text.split()
    if word_times is not None and len(word_times) != len(words0):
        raise ValueError(f"utterance {utt!r}: {len(word_times)} word times for the "
                         f"{len(words0)} words of the first hypothesis")
    if word_times:
        end = max(float(e) for _, e in word_times)
    else:
        end = start_time
    end = end if duration is None else max(float(duration), start_time)
    times = [float(start_time)]
    arcs: list[Arc] = []
    finals: dict[int, tuple[float, float]] = {}
    child: dict[tuple[int, str], int] = {}  # (state, word) -> next state of the prefix tree

    def new_state(t: float) -> int:
        times.append(t)
        return len(times) - 1

    for i, h in enumerate(hyps):
        words = h.text.split()
        if not np.isfinite(h.score):
            raise ValueError(f"utterance {utt!r}: hypothesis {i} ({h.text!r}) has a "
                             f"non-finite score {h.score}")
        timed = word_times if i == 0 and word_times else None
        s = 0
        for j, w in enumerate(words):
            last = j == len(words) - 1
            key = (s, w)
            if not last and key in child:
                s = child[key]
                continue
            if timed:
                t0, t1 = float(timed[j][0]), float(timed[j][1])
            else:  # spread what is left of this hypothesis over [time of s, end]
                t0 = times[s]
                t1 = t0 + (max(end, t0) - t0) / (len(words) - j)
            d = new_state(max(t1, times[s]))
            arcs.append(Arc(s, d, w, float(h.score) if last else 0.0, 0.0, t0, t1))
            if not last:
                child[key] = d
            s = d
        if not words:
            d = new_state(times[0])
            arcs.append(Arc(0, d, EPS, float(h.score), 0.0))
            s = d
        finals[s] = (0.0, 0.0)
    return Lattice(arcs, finals, times, start=0, utt=utt, num_states=len(times))


def concat_lattices(lattices: Sequence[Lattice], utt: str | None = None) -> Lattice:
    """Lattices of consecutive segments joined into one: each final state of a segment
    leads to the start of the next by an ``<eps>`` arc carrying its final weight.

    Args:
        lattices: One lattice per segment, in time order (times already absolute).
        utt: Utterance id of the result (default: that of the first lattice).

    Returns:
        A lattice whose paths are every combination of one path per segment, scored by
        the sum of their scores.
    """
    if not lattices:
        raise ValueError(f"utterance {utt!r}: no segment lattices to join")
    if len(lattices) == 1:
        lat = lattices[0]
        return lat if utt is None else Lattice(lat.arcs, lat.finals, lat.state_times,
                                               start=lat.start, utt=utt,
                                               num_states=lat.num_states)
    arcs: list[Arc] = []
    times: list[float] = []
    prev_finals: dict[int, tuple[float, float]] = {}
    for lat in lattices:
        off = len(times)
        times += lat.state_times
        for s, (am, lm) in prev_finals.items():
            arcs.append(Arc(s, off + lat.start, EPS, am, lm, times[s], times[s]))
        arcs += [Arc(a.src + off, a.dst + off, a.word, a.am_score, a.lm_score, a.start,
                     a.end, a.tids) for a in lat.arcs]
        prev_finals = {s + off: w for s, w in lat.finals.items()}
    return Lattice(arcs, prev_finals, times, start=lattices[0].start,
                   utt=lattices[0].utt if utt is None else utt, num_states=len(times))
