"""The word lattice: an acyclic graph of word arcs with acoustic and LM scores and times.

A :class:`Lattice` holds axes ``[state][arc]`` for one utterance. Scores are natural log,
higher is better (``am_score``, ``lm_score``); Kaldi's costs are negated at I/O. Words are
strings, ``"<eps>"`` for epsilon. Times are float seconds: every state has a time, and
every arc a ``start`` and ``end`` (by default the times of its states; after
:meth:`Lattice.remove_epsilons` an arc starts where its word starts, not where the
epsilon path before it began).

Semiring maths (forward-backward, shortest paths) runs in OpenFst through pynini; see
``posterior.py`` and ``nbest.py``. This module holds the type, validation, trimming,
scaling, pruning and epsilon removal.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from speechlm.core.hypothesis import EPS

if TYPE_CHECKING:
    from speechlm.lattice.nbest import Path



@dataclass(frozen=True, slots=True)
class Arc:
    """One arc of a lattice.

    Args:
        src: Source state.
        dst: Destination state.
        word: The word, ``"<eps>"`` for none.
        am_score: Acoustic log-likelihood (natural log, higher is better).
        lm_score: LM / graph log-probability (natural log, higher is better).
        start: Start time of the word in seconds (None: time of ``src``).
        end: End time in seconds (None: time of ``dst``).
        tids: Kaldi transition ids (or CTC input labels), one per frame the arc
            consumes; kept so that Kaldi lattices round-trip.
    """

    src: int
    dst: int
    word: str
    am_score: float = 0.0
    lm_score: float = 0.0
    start: float | None = None
    end: float | None = None
    tids: tuple[int, ...] = ()

    @property
    def score(self) -> float:
        """``am_score + lm_score``."""
        return self.am_score + self.lm_score


def max_states(num_arcs: int, num_finals: int) -> int:
    """Most states a reader accepts for these arcs without per-state data in the input:
    every state an arc or final weight can touch, plus slack for isolated ones. Per-state
    arrays are sized by the count, so a bigger one (a JSON ``"num_states": 1e8``) would
    take memory no input paid for.

    >>> max_states(3, 1)
    1032
    """
    return 2 * num_arcs + num_finals + 1 + 1024


class Lattice:
    """An acyclic word lattice of one utterance, axes ``[state][arc]``.

    States are ``0 .. num_states-1``; ``start`` is the start state; ``finals`` maps each
    final state to its final ``(am_score, lm_score)``. The constructor checks that the
    lattice is acyclic, that all scores are finite and that some final state is reachable;
    it raises ``ValueError`` naming the utterance otherwise. Unreachable (dead) states may
    remain: algorithms ignore them and :meth:`connect` drops them.

    Args:
        arcs: The arcs; ``start``/``end`` left None are filled from ``state_times``.
        finals: Final state -> ``(am_score, lm_score)`` of its final weight.
        state_times: Time of each state in seconds (length ``num_states``); None means
            all zero.
        start: Start state.
        utt: Utterance id, used in error messages and by writers.
        num_states: Number of states (default: one more than the largest state used).

    >>> lat = Lattice([Arc(0, 1, "a", -1.0, -0.5), Arc(0, 1, "b", -2.0, -0.5),
    ...                Arc(1, 2, "c", -1.0, 0.0)], finals={2: (0.0, 0.0)},
    ...               state_times=[0.0, 0.3, 0.5], utt="u1")
    >>> lat.num_states, len(lat.arcs)
    (3, 3)
    >>> lat.best_path().words
    ('a', 'c')
    >>> lat.arc_posteriors().round(3).tolist()
    [0.731, 0.269, 1.0]
    """

    def __init__(
        self,
        arcs: Iterable[Arc],
        finals: dict[int, tuple[float, float]],
        state_times: Sequence[float] | None = None,
        *,
        start: int = 0,
        utt: str | None = None,
        num_states: int | None = None,
    ) -> None:
        self.utt = utt
        arcs = list(arcs)
        if num_states is None:
            num_states = 1 + max([start, *finals, *(a.src for a in arcs), *(a.dst for a in arcs)])
        self.num_states = num_states
        self.start = start
        self.finals = {int(s): (float(w[0]), float(w[1])) for s, w in finals.items()}
        times = [0.0] * num_states if state_times is None else [float(t) for t in state_times]
        if len(times) != num_states:
            raise ValueError(f"{self._where()}: {len(times)} state times for "
                             f"{num_states} states")
        self.state_times = times
        self.arcs = arcs
        self._check()  # before the times below index states
        self.arcs = [a if a.start is not None and a.end is not None else Arc(
            a.src, a.dst, a.word, a.am_score, a.lm_score,
            times[a.src] if a.start is None else a.start,
            times[a.dst] if a.end is None else a.end, a.tids) for a in arcs]
        self.topo_order = self._topo_sort()
        if not self._reachable_finals():
            raise ValueError(f"{self._where()}: empty lattice: no path from the start "
                             f"state to a final state")

    # ------------------------------------------------------------------ checks
    def _where(self) -> str:
        return f"lattice {self.utt!r}" if self.utt is not None else "lattice"

    def _check(self) -> None:
        n = self.num_states
        if not 0 <= self.start < n:
            raise ValueError(f"{self._where()}: start state {self.start} out of range")
        if not self.finals:
            raise ValueError(f"{self._where()}: empty lattice: no final state")
        for s, (am, lm) in self.finals.items():
            if not 0 <= s < n:
                raise ValueError(f"{self._where()}: final state {s} out of range")
            if not (math.isfinite(am) and math.isfinite(lm)):
                raise ValueError(f"{self._where()}: non-finite final score at state {s}")
        for i, a in enumerate(self.arcs):
            if not (0 <= a.src < n and 0 <= a.dst < n):
                raise ValueError(f"{self._where()}: arc {i} ({a.src}->{a.dst}) has a state "
                                 f"out of range 0..{n - 1}")
            if not (math.isfinite(a.am_score) and math.isfinite(a.lm_score)):
                raise ValueError(f"{self._where()}: arc {i} ({a.src}->{a.dst} {a.word}) has a "
                                 f"non-finite score ({a.am_score}, {a.lm_score})")
            if not all(t is None or math.isfinite(t) for t in (a.start, a.end)):
                raise ValueError(f"{self._where()}: arc {i} ({a.src}->{a.dst} {a.word}) has a "
                                 f"non-finite time")
        if not all(math.isfinite(t) for t in self.state_times):
            raise ValueError(f"{self._where()}: non-finite state time")

    def _topo_sort(self) -> list[int]:
        # Kahn's algorithm; leftover states lie on a cycle.
        indeg = [0] * self.num_states
        for a in self.arcs:
            indeg[a.dst] += 1
        out = self.out_arcs
        order = [s for s in range(self.num_states) if indeg[s] == 0]
        i = 0
        while i < len(order):
            for k in out[order[i]]:
                d = self.arcs[k].dst
                indeg[d] -= 1
                if indeg[d] == 0:
                    order.append(d)
            i += 1
        if len(order) != self.num_states:
            cyc = next(s for s in range(self.num_states) if indeg[s] > 0)
            raise ValueError(f"{self._where()}: lattice has a cycle (through state {cyc}); "
                             f"lattices must be acyclic")
        return order

    def _reachable_finals(self) -> list[int]:
        fwd = self._reachable(self.start, forward=True)
        return [s for s in self.finals if fwd[s]]

    def _reachable(self, state: int | Iterable[int], forward: bool) -> list[bool]:
        adj = self.out_arcs if forward else self.in_arcs
        seen = [False] * self.num_states
        stack = [state] if isinstance(state, int) else list(state)
        for s in stack:
            seen[s] = True
        while stack:
            s = stack.pop()
            for k in adj[s]:
                t = self.arcs[k].dst if forward else self.arcs[k].src
                if not seen[t]:
                    seen[t] = True
                    stack.append(t)
        return seen

    # ------------------------------------------------------------------ access
    @functools.cached_property
    def out_arcs(self) -> list[list[int]]:
        """Arc indices leaving each state, axes ``[state][arc]`` (computed once: treat a
        Lattice as immutable; transforms return new ones)."""
        out: list[list[int]] = [[] for _ in range(self.num_states)]
        for k, a in enumerate(self.arcs):
            out[a.src].append(k)
        return out

    @functools.cached_property
    def in_arcs(self) -> list[list[int]]:
        """Arc indices entering each state, axes ``[state][arc]``."""
        inc: list[list[int]] = [[] for _ in range(self.num_states)]
        for k, a in enumerate(self.arcs):
            inc[a.dst].append(k)
        return inc

    @property
    def num_arcs(self) -> int:
        return len(self.arcs)

    @property
    def duration(self) -> float:
        """Latest final-state time in seconds."""
        return max(self.state_times[s] for s in self.finals)

    def words(self) -> set[str]:
        """The set of non-epsilon words on arcs."""
        return {a.word for a in self.arcs if a.word != EPS}

    def __repr__(self) -> str:
        return (f"Lattice(utt={self.utt!r}, num_states={self.num_states}, "
                f"num_arcs={self.num_arcs}, finals={len(self.finals)})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Lattice):
            return NotImplemented
        return (self.utt, self.num_states, self.start, self.finals, self.state_times,
                self.arcs) == (other.utt, other.num_states, other.start, other.finals,
                               other.state_times, other.arcs)

    def _replace(self, arcs: Iterable[Arc], finals: dict[int, tuple[float, float]]) -> Lattice:
        return Lattice(arcs, finals, self.state_times, start=self.start, utt=self.utt,
                       num_states=self.num_states)

    # ----------------------------------------------------------- transforms
    def connect(self) -> Lattice:
        """Drop states (and their arcs) not on any path from the start to a final state.

        States are renumbered in topological order, so the start state becomes 0.
        """
        fwd = self._reachable(self.start, forward=True)
        bwd = self._reachable(self.finals, forward=False)
        keep = [s for s in self.topo_order if fwd[s] and bwd[s]]
        if keep == list(range(self.num_states)) and self.start == 0:
            return self  # already connected and topologically numbered
        new = {s: i for i, s in enumerate(keep)}
        arcs = [Arc(new[a.src], new[a.dst], a.word, a.am_score, a.lm_score, a.start, a.end,
                    a.tids) for a in self.arcs if a.src in new and a.dst in new]
        finals = {new[s]: w for s, w in self.finals.items() if s in new}
        return Lattice(arcs, finals, [self.state_times[s] for s in keep], start=0,
                       utt=self.utt, num_states=len(keep))

    def scale(self, am_scale: float = 1.0, lm_scale: float = 1.0) -> Lattice:
        """A copy with every ``am_score`` times ``am_scale`` and ``lm_score`` times
        ``lm_scale`` (final weights included), like Kaldi's ``lattice-scale``."""
        arcs = [dataclasses.replace(a, am_score=a.am_score * am_scale,
                                    lm_score=a.lm_score * lm_scale) for a in self.arcs]
        finals = {s: (am * am_scale, lm * lm_scale) for s, (am, lm) in self.finals.items()}
        return self._replace(arcs, finals)

    def prune(self, beam: float, max_arcs: int | None = None, *, am_scale: float = 1.0,
              lm_scale: float = 1.0) -> Lattice:
        """Keep arcs and final weights on some path within ``beam`` of the best path (like
        Kaldi's ``lattice-prune``).

        The best path through each arc comes from tropical forward and backward shortest
        distances (OpenFst). With ``max_arcs`` only that many arcs, best first, are kept.
        Dead states are then removed (:meth:`connect`).

        Args:
            beam: Log-score beam (>= 0) on ``am_scale * am_score + lm_scale * lm_score``.
            max_arcs: Keep at most this many arcs (the best path's arcs are always kept).
            am_scale: Acoustic scale for the comparison.
            lm_scale: LM scale for the comparison.

        Returns:
            The pruned lattice.
        """
        from speechlm.lattice.posterior import arc_best_scores, forward_backward

        if beam < 0:
            raise ValueError(f"{self._where()}: beam must be >= 0, got {beam}")
        through, best = arc_best_scores(self, am_scale, lm_scale)  # (A,), scalar
        # OpenFst weights are float32, so allow their rounding in the comparison.
        floor = best - beam - 1e-5 * max(1.0, abs(best))
        keep = through >= floor
        alpha, _, _ = forward_backward(self, am_scale, lm_scale, "tropical")
        finals = {s: w for s, w in self.finals.items()
                  if alpha[s] + am_scale * w[0] + lm_scale * w[1] >= floor}
        if max_arcs is not None and keep.sum() > max_arcs:
            order = np.argsort(-through, kind="stable")[:max(max_arcs, 1)]
            cap = np.zeros_like(keep)
            cap[order] = True
            keep &= cap
        try:
            kept = self._replace([a for a, k in zip(self.arcs, keep, strict=True) if k],
                                 finals)
        except ValueError:
            # max_arcs below the best path's length: keep exactly the best path.
            path = self.best_path(am_scale, lm_scale)
            last = self.arcs[path.arc_ids[-1]].dst if path.arc_ids else self.start
            kept = self._replace([self.arcs[k] for k in path.arc_ids],
                                 {last: self.finals[last]})
        return kept.connect()

    def remove_epsilons(self, am_scale: float = 1.0, lm_scale: float = 1.0,
                        beam: float | None = None) -> Lattice:
        """Time-preserving epsilon removal in the Viterbi sense.

        The new states are the start state, the final states and the destinations of word
        arcs ("boundary" states). For each boundary state ``s`` and each state ``u`` that
        ``s`` reaches by epsilon arcs only, the best (highest ``am_scale * am + lm_scale *
        lm``) epsilon path ``s ~> u`` is prepended to every word arc ``u -> t``, giving an
        arc ``s -> t`` whose scores are the sums along that path, whose ``start`` is the
        time of ``u`` (where the word starts, not where the epsilons began), ``end`` is
        the time of ``t``, and whose ``tids`` are those of the whole path. A boundary
        state that reaches a final state by epsilons becomes final with the best such
        path's score. Arcs with the same ``(src, dst, word, start)`` are then merged,
        keeping the best. Like Kaldi's lattice determinization this keeps the best
        alignment locally; unlike it, it does not merge states with the same word
        history, so the result is not deterministic and can hold many more arcs than
        the input (each word arc is repeated from every boundary state whose epsilon
        region reaches it); ``beam`` bounds that.

        Args:
            am_scale: Acoustic scale used to choose the best epsilon path.
            lm_scale: LM scale used to choose the best epsilon path.
            beam: If given, skip new arcs (and final weights) whose best complete path is
                more than ``beam`` below the best path: the result is that of
                ``remove_epsilons().prune(beam)``, without building the pruned arcs.

        Returns:
            An epsilon-free lattice (an epsilon-only lattice becomes a final start state).
        """
        lat = self.connect()
        out = lat.out_arcs
        pos = {s: i for i, s in enumerate(lat.topo_order)}
        boundary = sorted({lat.start, *(a.dst for a in lat.arcs if a.word != EPS)},
                          key=pos.__getitem__)
        new_id = {s: i for i, s in enumerate(boundary)}
        floor, beta = -math.inf, None
        if beam is not None:
            from speechlm.lattice.posterior import forward_backward

            # Backward scores of boundary states are the same in the new lattice.
            _, beta, best_score = forward_backward(lat, am_scale, lm_scale, "tropical")
            floor = best_score - beam - 1e-5 * max(1.0, abs(best_score))
        # Best score from the start to each boundary state over the new arcs made so far
        # (boundaries are visited in topological order, so it is final when visited);
        # boundaries it does not reach are skipped.
        alpha = {lat.start: 0.0}
        # (src, dst, word, start) -> (tot, am, lm, end, tids) of the best candidate
        best: dict[tuple[int, int, str, float], tuple] = {}
        finals: dict[int, tuple[float, float, float]] = {}
        for s in boundary:
            # Viterbi over the epsilon-only subgraph from s, in topological order.
            # path[u] = (tot, am, lm, tids) of the best epsilon path s ~> u.
            path: dict[int, tuple[float, float, float, tuple[int, ...]]] = {
                s: (0.0, 0.0, 0.0, ())}
            if s not in alpha:
                continue
            head = alpha[s]
            for u in sorted(self._eps_closure(lat, out, s), key=pos.__getitem__):
                tot, am, lm, tids = path[u]
                if u in lat.finals:
                    fam, flm = lat.finals[u]
                    ftot = tot + am_scale * fam + lm_scale * flm
                    if head + ftot >= floor and (s not in finals or ftot > finals[s][0]):
                        finals[s] = (ftot, am + fam, lm + flm)
                for k in out[u]:
                    a = lat.arcs[k]
                    t = tot + am_scale * a.am_score + lm_scale * a.lm_score
                    if a.word == EPS:
                        if a.dst not in path or t > path[a.dst][0]:
                            path[a.dst] = (t, am + a.am_score, lm + a.lm_score, tids + a.tids)
                        continue
                    if beta is not None and head + t + beta[a.dst] < floor:
                        continue
                    if a.dst not in alpha or head + t > alpha[a.dst]:
                        alpha[a.dst] = head + t
                    key = (new_id[s], new_id[a.dst], a.word, a.start)
                    if key not in best or t > best[key][0]:
                        best[key] = (t, am + a.am_score, lm + a.lm_score, a.end, tids + a.tids)
        arcs = [Arc(src, dst, word, am, lm, start, end, tids)
                for (src, dst, word, start), (_, am, lm, end, tids) in best.items()]
        arcs.sort(key=lambda a: (a.src, a.start, a.dst, a.word))
        # Frames an epsilon path consumes before a final state are not kept anywhere
        # (Kaldi keeps them in the final weight's string); state times are unaffected.
        return Lattice(arcs, {new_id[s]: (am, lm) for s, (_, am, lm) in finals.items()},
                       [lat.state_times[s] for s in boundary], start=0, utt=lat.utt,
                       num_states=len(boundary)).connect()

    @staticmethod
    def _eps_closure(lat: Lattice, out: list[list[int]], s: int) -> set[int]:
        seen = {s}
        stack = [s]
        while stack:
            u = stack.pop()
            for k in out[u]:
                a = lat.arcs[k]
                if a.word == EPS and a.dst not in seen:
                    seen.add(a.dst)
                    stack.append(a.dst)
        return seen

    # --------------------------------------------------------------- queries
    def best_path(self, am_scale: float = 1.0, lm_scale: float = 1.0) -> Path:
        """The highest-scoring path (OpenFst shortest path), see :func:`nbest.best_path`."""
        from speechlm.lattice.nbest import best_path

        return best_path(self, am_scale=am_scale, lm_scale=lm_scale)

    def nbest(self, n: int, *, unique: bool = True, am_scale: float = 1.0,
              lm_scale: float = 1.0, max_paths: int | None = None) -> list[Path]:
        """The ``n`` best paths, see :func:`nbest.nbest`."""
        from speechlm.lattice.nbest import nbest

        return nbest(self, n, unique=unique, am_scale=am_scale, lm_scale=lm_scale,
                     max_paths=max_paths)

    def arc_posteriors(self, am_scale: float = 1.0, lm_scale: float = 1.0) -> np.ndarray:
        """(num_arcs,) arc posteriors by log-semiring forward-backward, see
        :func:`posterior.arc_posteriors`."""
        from speechlm.lattice.posterior import arc_posteriors

        return arc_posteriors(self, am_scale=am_scale, lm_scale=lm_scale)

    # -------------------------------------------------------------------- I/O
    @classmethod
    def from_kaldi_text(cls, text: str, *, utt: str | None = None,
                        words: dict[int, str] | str | None = None,
                        frame_shift: float = 0.01) -> Lattice:
        """Parse one lattice in Kaldi text form, see :func:`kaldi_io.lattice_from_kaldi_text`."""
        from speechlm.lattice.kaldi_io import lattice_from_kaldi_text

        return lattice_from_kaldi_text(text, utt=utt, words=words, frame_shift=frame_shift)

    def to_kaldi_text(self, compact: bool = True, words: dict | str | None = None,
                      frame_shift: float = 0.01, header: bool = True) -> str:
        """Kaldi text form, see :func:`kaldi_io.lattice_to_kaldi_text`."""
        from speechlm.lattice.kaldi_io import lattice_to_kaldi_text

        return lattice_to_kaldi_text(self, compact=compact, words=words,
                                     frame_shift=frame_shift, header=header)

    @classmethod
    def from_slf(cls, path_or_text: str, utt: str | None = None, **kwargs) -> Lattice:
        """Import HTK SLF, see :func:`slf.lattice_from_slf`."""
        from speechlm.lattice.slf import lattice_from_slf

        return lattice_from_slf(path_or_text, utt=utt, **kwargs)

    def to_slf(self) -> str:
        """HTK SLF text, see :func:`slf.lattice_to_slf`."""
        from speechlm.lattice.slf import lattice_to_slf

        return lattice_to_slf(self)

    def to_json(self) -> dict:
        """A JSON-able dict (see :meth:`from_json` for the schema)."""
        arcs = []
        for a in self.arcs:
            d = {"src": a.src, "dst": a.dst, "word": a.word, "am_score": a.am_score,
                 "lm_score": a.lm_score, "start": a.start, "end": a.end}
            if a.tids:
                d["tids"] = list(a.tids)
            arcs.append(d)
        return {"utt": self.utt, "num_states": self.num_states, "start": self.start,
                "state_times": self.state_times,
                "finals": [[s, am, lm] for s, (am, lm) in sorted(self.finals.items())],
                "arcs": arcs}

    @classmethod
    def from_json(cls, obj: dict | str) -> Lattice:
        """Build from :meth:`to_json` output (a dict or its JSON string).

        Schema: ``{"utt", "num_states", "start", "state_times": [...], "finals":
        [[state, am_score, lm_score], ...], "arcs": [{"src", "dst", "word", "am_score",
        "lm_score", "start", "end", "tids"?}, ...]}``.
        """
        import json

        if isinstance(obj, str):
            obj = json.loads(obj)
        utt = obj.get("utt")
        try:
            arcs = [Arc(int(d["src"]), int(d["dst"]), str(d["word"]), float(d["am_score"]),
                        float(d["lm_score"]), d.get("start"), d.get("end"),
                        tuple(int(t) for t in d.get("tids", ())))
                    for d in obj["arcs"]]
            finals = {int(s): (float(am), float(lm)) for s, am, lm in obj["finals"]}
            start = int(obj.get("start", 0))
            times, num_states = obj.get("state_times"), obj.get("num_states")
            if num_states is not None:
                num_states = int(num_states)
                limit = max_states(len(arcs), len(finals))
                # before any allocation; state times as long as the count pay for it
                if num_states > limit and (times is None or len(times) != num_states):
                    raise ValueError(f"lattice {utt!r}: num_states {num_states} for "
                                     f"{len(arcs)} arcs and {len(finals)} final states "
                                     f"(at most {limit} without state_times)")
            else:  # ids with gaps and no count: number them densely, times with them
                ids = sorted({start, *finals, *(a.src for a in arcs), *(a.dst for a in arcs)})
                if ids and ids[-1] != len(ids) - 1:
                    if times is not None and len(times) != ids[-1] + 1:
                        raise ValueError(f"lattice {utt!r}: {len(times)} state times for "
                                         f"state ids up to {ids[-1]}")
                    rank = {s: i for i, s in enumerate(ids)}
                    arcs = [Arc(rank[a.src], rank[a.dst], a.word, a.am_score, a.lm_score,
                                a.start, a.end, a.tids) for a in arcs]
                    finals = {rank[s]: w for s, w in finals.items()}
                    times = None if times is None else [times[s] for s in ids]
                    start = rank[start]
            return cls(arcs, finals, times, start=start, utt=utt, num_states=num_states)
        except (KeyError, TypeError) as e:
            raise ValueError(f"lattice {utt!r}: bad JSON lattice: {e!r}") from e
