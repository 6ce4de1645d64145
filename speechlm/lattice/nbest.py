"""Best path and N-best lists of a lattice, by OpenFst shortest paths (through pynini).

Like ``icefall/decode.py``'s ``Nbest.from_lattice`` these are free functions over a
lattice. Distinct word sequences (``unique=True``) come from the word acceptor after
OpenFst epsilon removal (``pynini.rmepsilon``) and ``shortestpath(unique=True)``; each
sequence's best alignment (its arcs, am/lm split and times) is then found by composing
the lattice, as a transducer from arc ids to words, with that sequence.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from speechlm.core.hypothesis import Hypothesis
from speechlm.lattice.lattice import EPS
from speechlm.lattice.posterior import to_fst

if TYPE_CHECKING:
    import pynini

    from speechlm.lattice.lattice import Lattice


@dataclass(frozen=True)
class Path:
    """One path through a lattice.

    Args:
        words: Non-epsilon words in order.
        am_score: Sum of acoustic scores along the path (final weight included), unscaled.
        lm_score: Sum of LM scores, unscaled.
        tot_score: ``am_scale * am_score + lm_scale * lm_score`` with the scales it was
            ranked by.
        starts: Start time (s) of each word.
        ends: End time (s) of each word.
        arc_ids: Indices into ``lattice.arcs`` of every arc on the path, epsilons included.

    >>> p = Path(("hi",), -3.0, -1.0, -4.0, (0.1,), (0.4,), (0,))
    >>> p.text
    'hi'
    """

    words: tuple[str, ...]
    am_score: float
    lm_score: float
    tot_score: float
    starts: tuple[float, ...]
    ends: tuple[float, ...]
    arc_ids: tuple[int, ...]

    @property
    def text(self) -> str:
        return " ".join(self.words)

    def to_hypothesis(self) -> Hypothesis:
        """As a ``speechlm.core`` :class:`Hypothesis` (score = ``tot_score``)."""
        return Hypothesis(self.text, self.tot_score, tokens=self.words,
                          scores=(("am", self.am_score), ("lm", self.lm_score)))

    def to_json(self) -> dict:
        return {"words": list(self.words), "am_score": self.am_score,
                "lm_score": self.lm_score, "tot_score": self.tot_score,
                "starts": list(self.starts), "ends": list(self.ends)}


def path_from_arcs(lat: Lattice, arc_ids: list[int], am_scale: float = 1.0,
                   lm_scale: float = 1.0) -> Path:
    """Build a :class:`Path` from arc indices forming a start-to-final path."""
    arcs = [lat.arcs[k] for k in arc_ids]
    last = arcs[-1].dst if arcs else lat.start
    fam, flm = lat.finals[last]
    am = sum(a.am_score for a in arcs) + fam
    lm = sum(a.lm_score for a in arcs) + flm
    words = [a for a in arcs if a.word != EPS]
    return Path(tuple(a.word for a in words), am, lm, am_scale * am + lm_scale * lm,
                tuple(a.start for a in words), tuple(a.end for a in words), tuple(arc_ids))


def _linear_paths(f: pynini.Fst) -> list[list[int]]:
    """Input-label sequences of all paths of a shortest-path result (a tree, no cycles)."""
    out: list[list[int]] = []
    stack = [(f.start(), [])]
    while stack:
        s, labels = stack.pop()
        if float(f.final(s)) != float("inf"):
            out.append(labels)
        for a in f.arcs(s):
            stack.append((a.nextstate, labels + ([a.ilabel] if a.ilabel else [])))
    return out


def best_path(lat: Lattice, am_scale: float = 1.0, lm_scale: float = 1.0) -> Path:
    """The highest-scoring path (OpenFst ``shortestpath`` in the tropical semiring).

    Args:
        lat: The lattice.
        am_scale: Acoustic scale for ranking.
        lm_scale: LM scale for ranking.

    Returns:
        The best :class:`Path`.
    """
    import pynini

    sp = pynini.shortestpath(to_fst(lat, am_scale, lm_scale, "tropical"))
    paths = _linear_paths(sp)
    if not paths:
        raise ValueError(f"lattice {lat.utt!r}: no path")
    return path_from_arcs(lat, [k - 1 for k in paths[0]], am_scale, lm_scale)


def nbest(lat: Lattice, n: int, *, unique: bool = True, am_scale: float = 1.0,
          lm_scale: float = 1.0, max_paths: int | None = None) -> list[Path]:
    """The ``n`` best paths, best first.

    With ``unique=True`` (distinct word sequences) the lattice becomes a word acceptor
    with OpenFst epsilon removal (tropical, so each word path keeps its best epsilon
    path); its ``m`` shortest paths (OpenFst ``shortestpath(nshortest=m)``, ``m``
    doubling from ``n``) are ranked and each word sequence kept at its first, best,
    occurrence. That ranking is exact for every sequence found: a sequence whose best
    path is among the ``m`` best paths is found with that path. Alignment variants of
    the same words use up paths, so after ``max_paths`` paths fewer than ``n`` sequences
    may be returned. Each sequence's best alignment (arcs, am/lm split, times) then comes
    from composing the lattice, as a transducer from arc ids to words, with the sequence.
    (OpenFst's own ``shortestpath(unique=True)`` determinizes the word acceptor; on raw
    decoder lattices that took seconds to minutes here.)

    Args:
        lat: The lattice.
        n: How many paths (fewer if the lattice has fewer).
        unique: Distinct word sequences (each with its best alignment); otherwise
            distinct arc sequences, which may repeat word sequences.
        am_scale: Acoustic scale for ranking.
        lm_scale: LM scale for ranking.
        max_paths: With ``unique``, stop doubling ``m`` here (default ``max(1000, 20n)``).

    Returns:
        Up to ``n`` :class:`Path` objects sorted by ``tot_score``, best first.
    """
    import pynini

    if n < 1:
        raise ValueError(f"lattice {lat.utt!r}: n must be >= 1, got {n}")
    if not unique:
        sp = pynini.shortestpath(to_fst(lat, am_scale, lm_scale, "tropical"), nshortest=n)
        paths = [path_from_arcs(lat, [k - 1 for k in p], am_scale, lm_scale)
                 for p in _linear_paths(sp)]
        paths.sort(key=lambda p: -p.tot_score)
        return paths[:n]
    vocab = {w: i + 1 for i, w in enumerate(sorted(lat.words()))}
    wid = [vocab.get(a.word, 0) for a in lat.arcs]
    trans = to_fst(lat, am_scale, lm_scale, "tropical", olabels=wid)  # arc id -> word
    acceptor = pynini.rmepsilon(trans.copy().project("output"))
    cap = max_paths if max_paths is not None else max(1000, 20 * n)
    m = n
    while True:
        found = _ranked_sequences(pynini.shortestpath(acceptor, nshortest=m))
        if len(found[1]) >= n or found[0] < m or m >= cap:
            break
        m = min(2 * m, cap)
    trans.arcsort("olabel")
    one = pynini.Weight.one("tropical")
    paths = []
    for seq in found[1][:n]:
        # The best alignment of this word sequence: lattice o linear word acceptor.
        lin = pynini.Fst(arc_type="standard")
        lin.add_states(len(seq) + 1)
        lin.set_start(0)
        for i, w in enumerate(seq):
            lin.add_arc(i, pynini.Arc(w, w, one, i + 1))
        lin.set_final(len(seq))
        best = pynini.shortestpath(pynini.compose(trans, lin))
        paths.append(path_from_arcs(lat, [k - 1 for k in _linear_paths(best)[0]],
                                    am_scale, lm_scale))
    paths.sort(key=lambda p: -p.tot_score)
    return paths


def _ranked_sequences(sp: pynini.Fst) -> tuple[int, list[tuple[int, ...]]]:
    """``(number of paths, distinct label sequences by best path cost)`` of an n-shortest
    result."""
    it = sp.paths()
    scored = []
    while not it.done():
        scored.append((float(it.weight()), tuple(it.olabels())))
        it.next()
    scored.sort(key=lambda x: x[0])
    seen: dict[tuple[int, ...], None] = {}
    for _, seq in scored:
        seen.setdefault(seq, None)
    return len(scored), list(seen)
