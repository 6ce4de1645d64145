"""Word confusion networks (sausages), axes ``[bin][word]``, and CTM with confidences.

A :class:`ConfusionNetwork` is a sequence of bins; each bin lists competing words with
posteriors summing to 1, ``"<eps>"`` standing for "no word here" (a deletion). Bins come
from Kaldi-style lattice MBR (Xu et al. 2011, see ``mbr.py``), whose bins are the
positions of the MBR hypothesis and the gaps around them; the MBR 1-best is the best
word of each bin, skipping bins where epsilon wins.

JSON, one line per utterance::

    {"utt": "u1", "bins": [[{"word": "a", "posterior": 0.7, "start": 0.1, "end": 0.4},
                            {"word": "<eps>", "posterior": 0.3, "start": 0.4, "end": 0.4}],
                           ...]}
"""
from __future__ import annotations

import heapq
import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from speechlm.lattice.lattice import EPS

if TYPE_CHECKING:
    from speechlm.lattice.lattice import Lattice


class BinEntry(NamedTuple):
    """One alternative in a bin: ``(word, posterior, start, end)``, times in seconds."""

    word: str
    posterior: float
    start: float
    end: float


class ConfusionNetwork:
    """A word confusion network of one utterance, axes ``[bin][word]``.

    Args:
        bins: Each bin a list of ``(word, posterior, start, end)``; posteriors of a bin
            should sum to 1 (not enforced here; :meth:`check` verifies it).
        utt: Utterance id.

    >>> cn = ConfusionNetwork([[("ten", 0.8, 0.1, 0.4), ("<eps>", 0.2, 0.4, 0.4)],
    ...                        [("of", 0.6, 0.4, 0.5), ("a", 0.4, 0.4, 0.5)]], utt="001")
    >>> cn.mbr_words()
    ['ten', 'of']
    >>> cn.ctm_lines()
    ['001 1 0.100 0.300 ten 0.8000', '001 1 0.400 0.100 of 0.6000']
    """

    def __init__(self, bins: Iterable[Iterable[tuple]], utt: str | None = None):
        self.utt = utt
        self.bins: list[list[BinEntry]] = [
            sorted((BinEntry(str(w), float(p), float(s), float(e)) for w, p, s, e in b),
                   key=lambda x: -x.posterior) for b in bins]

    def __len__(self) -> int:
        return len(self.bins)

    def __repr__(self) -> str:
        return f"ConfusionNetwork(utt={self.utt!r}, bins={len(self.bins)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ConfusionNetwork):
            return NotImplemented
        return self.utt == other.utt and self.bins == other.bins

    @classmethod
    def from_lattice(cls, lat: Lattice, am_scale: float = 1.0, lm_scale: float = 1.0, *,
                     min_word_mass: float = 1e-4, max_iterations: int = 100
                     ) -> ConfusionNetwork:
        """Build the confusion network of a lattice by lattice MBR (Xu et al. 2011).

        This is the sausage of Kaldi's ``lattice-mbr-decode`` (``lat/sausages.cc``):
        bins are the word positions of the MBR hypothesis and the gaps between them;
        a bin's entries are the posteriors that a lattice word aligns to that position
        under the edit-distance alignment of the recursion, epsilon for deletion.

        Args:
            lat: The lattice (raw or epsilon-free).
            am_scale: Acoustic scale for posteriors (Kaldi's ``--acoustic-scale``).
            lm_scale: LM scale for posteriors.
            min_word_mass: Drop bins whose non-epsilon mass is below this (the gap bins
                where almost every path has no word); 0 keeps every bin.
            max_iterations: Cap on MBR passes.

        Returns:
            The confusion network; each bin's entries sorted by posterior, best first.
        """
        from speechlm.lattice.mbr import mbr_decode

        st = mbr_decode(lat, am_scale, lm_scale, max_iterations)
        bins = []
        for q in range(st.gamma.shape[0]):
            row = st.gamma[q]
            if row[1:].sum() < min_word_mass and min_word_mass > 0:
                continue
            bins.append([(st.vocab[i], float(row[i]), float(st.start[q, i]),
                          float(st.end[q, i])) for i in row.nonzero()[0]])
        return cls(bins, utt=lat.utt)

    def check(self, tol: float = 1e-4) -> None:
        """Raise ValueError if a bin is empty or its posteriors do not sum to 1."""
        for i, b in enumerate(self.bins):
            total = sum(e.posterior for e in b)
            if not b or abs(total - 1.0) > tol:
                raise ValueError(f"confusion network {self.utt!r}: bin {i} posteriors sum "
                                 f"to {total:.6f}, not 1")

    def best_entries(self) -> list[BinEntry]:
        """The best entry of every bin where it is a word (the MBR 1-best with times)."""
        out = []
        for b in self.bins:
            best = max(b, key=lambda e: e.posterior)
            if best.word != EPS:
                out.append(best)
        return out

    def mbr_words(self) -> list[str]:
        """The MBR 1-best: the most likely word of each bin, epsilon bins skipped."""
        return [e.word for e in self.best_entries()]

    def kbest_paths(self, k: int) -> list[tuple[str, float]]:
        """The ``k`` most likely word strings through the bins, with their probabilities.

        A path takes one entry per bin; bins are independent, so its probability is the
        product of the chosen posteriors. The ``8 k`` best paths are popped best first
        from a heap of one-step successors (each moves one bin to its next entry); paths
        that read the same once ``<eps>`` is dropped are merged (probabilities summed),
        and the ``k`` most likely strings are returned, best first. An empty network
        gives ``[("", 1.0)]``.

        >>> cn = ConfusionNetwork([[("ten", 0.8, 0, 0), ("<eps>", 0.2, 0, 0)],
        ...                        [("of", 0.6, 0, 0), ("a", 0.4, 0, 0)]])
        >>> [(t, round(p, 2)) for t, p in cn.kbest_paths(3)]
        [('ten of', 0.48), ('ten a', 0.32), ('of', 0.12)]
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        bins = [b for b in self.bins if b]  # entries are sorted best first
        if not bins:
            return [("", 1.0)]

        logs = [[math.log(max(e.posterior, 1e-300)) for e in b] for b in bins]
        start = (0,) * len(bins)
        heap, seen = [(-sum(b[0] for b in logs), start)], {start}
        found: dict[str, float] = {}
        # More pops than k: epsilons make several paths read the same, and a string's
        # probability is the sum over its paths (the 8k best cover most of it).
        for _ in range(8 * k):
            if not heap:
                break
            neg, idx = heapq.heappop(heap)
            text = " ".join(bins[i][j].word for i, j in enumerate(idx)
                            if bins[i][j].word != EPS)
            found[text] = found.get(text, 0.0) + math.exp(-neg)
            for i, j in enumerate(idx):
                if j + 1 < len(bins[i]):
                    nxt = idx[:i] + (j + 1,) + idx[i + 1:]
                    if nxt not in seen:  # one bin moves on: its log-probability changes
                        seen.add(nxt)
                        heapq.heappush(heap, (neg + logs[i][j] - logs[i][j + 1], nxt))
        return sorted(found.items(), key=lambda x: -x[1])[:k]

    def ctm_lines(self, channel: int | str = 1) -> list[str]:
        """CTM lines ``utt channel start dur word confidence`` of the MBR 1-best.

        The confidence of a word is its posterior in its bin (as Kaldi's
        ``lattice-mbr-decode --one-best-times`` + ``--confidences`` give).
        """
        utt = self.utt if self.utt is not None else "utt"
        return [f"{utt} {channel} {e.start:.3f} {max(e.end - e.start, 0.0):.3f} {e.word} "
                f"{e.posterior:.4f}" for e in self.best_entries()]

    def to_json(self) -> dict:
        return {"utt": self.utt,
                "bins": [[{"word": e.word, "posterior": e.posterior, "start": e.start,
                           "end": e.end} for e in b] for b in self.bins]}

    def to_json_line(self) -> str:
        """One ``cn.jsonl`` line (no newline): the only writer of that format."""
        return json.dumps(self.to_json(), ensure_ascii=False)

    @classmethod
    def from_json(cls, obj: dict | str) -> ConfusionNetwork:
        if isinstance(obj, str):
            obj = json.loads(obj)
        utt = obj.get("utt")
        try:
            cn = cls([[(d["word"], d["posterior"], d["start"], d["end"]) for d in b]
                      for b in obj["bins"]], utt=utt)
        except (KeyError, TypeError) as e:
            raise ValueError(f"confusion network {utt!r}: bad JSON: {e!r}") from e
        import math

        for k, b in enumerate(cn.bins):
            for e in b:
                if not (0.0 <= e.posterior <= 1.0 + 1e-4) or not math.isfinite(e.start + e.end):
                    raise ValueError(f"confusion network {utt!r}: bin {k}: word {e.word!r} has "
                                     f"posterior {e.posterior} (must be in [0, 1]) or "
                                     f"non-finite times ({e.start}, {e.end})")
                if "\n" in e.word or "\r" in e.word:
                    raise ValueError(f"confusion network {utt!r}: bin {k}: a word contains a "
                                     "line break")
        return cn

    def to_lattice(self) -> Lattice:
        """The network as a lattice: one state per bin boundary, one arc per entry with
        ``am_score = log(posterior)`` (zero-posterior entries dropped)."""
        import math

        from speechlm.lattice.lattice import Arc, Lattice

        arcs, times = [], [self.bins[0][0].start if self.bins else 0.0]
        for q, b in enumerate(self.bins):
            for e in b:
                if e.posterior > 0:
                    arcs.append(Arc(q, q + 1, e.word, math.log(e.posterior), 0.0,
                                    e.start, e.end))
            times.append(max([times[-1], *(e.end for e in b)]))
        return Lattice(arcs, {len(self.bins): (0.0, 0.0)}, times, utt=self.utt,
                       num_states=len(self.bins) + 1)


def ctm(cns: Iterable[ConfusionNetwork], channel: int | str = 1) -> list[str]:
    """CTM lines of many confusion networks, in order."""
    return [line for cn in cns for line in cn.ctm_lines(channel)]


def write_cn_jsonl(path: str | Path, cns: Iterable[ConfusionNetwork]) -> int:
    """Write confusion networks as JSON lines; returns how many."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for cn in cns:
            f.write(cn.to_json_line() + "\n")
            n += 1
    return n


def read_cn_jsonl(path: str | Path) -> Iterator[ConfusionNetwork]:
    """Read confusion networks from JSON lines (errors name the file and line)."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not JSON: {e}") from None
            try:
                yield ConfusionNetwork.from_json(obj)
            except (ValueError, AttributeError) as e:
                raise ValueError(f"{path}:{lineno}: {e}") from None
