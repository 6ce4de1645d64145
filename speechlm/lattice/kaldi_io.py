"""Kaldi text lattices: what ``lattice-copy ark:1.lats ark,t:-`` prints, and kaldifst's
``Lattice.to_str()`` (kaldi-decoder's ``get_raw_lattice()``).

One lattice per utterance: a header line with the utterance id (Kaldi writes ``"utt \\n"``),
then OpenFst text lines, then a blank line. Two arc forms:

- CompactLattice: ``src dst word graph,acoustic,tid_tid_...`` (the tid string may be
  empty, the weight may be omitted when it is One).
- Lattice: ``src dst ilabel olabel graph,acoustic`` (ilabel a transition id or CTC label,
  0 for none; olabel a word id or 0).

Final states: ``state`` or ``state graph,acoustic[,tids]``. The first line's source is
the start state. Weights are costs (negated log probabilities): we negate them into
``lm_score = -graph`` and ``am_score = -acoustic``. Labels are integer ids mapped through
``words`` (a ``words.txt`` path or an id -> word dict), or words written directly; 0 is
``"<eps>"``. State times are frames from the start times ``frame_shift``: an arc consumes
one frame per transition id (Lattice: one if its ilabel is nonzero).
"""
from __future__ import annotations

import gzip
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

from speechlm.lattice.lattice import EPS, Arc, Lattice

WordTable = dict[int, str] | dict[str, int] | str | Path | None


def read_words_txt(path: str | Path) -> dict[int, str]:
    """Read a Kaldi ``words.txt`` (``word id`` per line) into id -> word."""
    out: dict[int, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise ValueError(f"{path}:{lineno}: expected 'word id', got {line.rstrip()!r}")
            out[int(parts[1])] = parts[0]
    return out


def _id_to_word(words: WordTable) -> dict[int, str] | None:
    if words is None:
        return None
    if isinstance(words, (str, Path)):
        return read_words_txt(words)
    if words and isinstance(next(iter(words)), str):
        return {i: w for w, i in words.items()}
    return dict(words)


def _open(path: str | Path, mode: str):
    path = str(path)
    for prefix in ("ark,t:", "ark:"):
        if path.startswith(prefix):
            path = path[len(prefix):]
    if path.endswith(".gz"):
        return gzip.open(path, mode + "t", encoding="utf-8")
    return open(path, mode, encoding="utf-8")


def _is_int(s: str) -> bool:
    return s.lstrip("-").isdigit()


class _Parser:
    """Parses the body lines of one lattice; ``lines`` are ``(lineno, text)``."""

    def __init__(self, utt: str | None, words: dict[int, str] | None, source: str):
        self.utt, self.words, self.source = utt, words, source

    def fail(self, lineno: int, msg: str, line: str = "") -> ValueError:
        where = f"{self.source}:{lineno}" if self.source else f"line {lineno}"
        shown = f": {line.strip()!r}" if line else ""
        return ValueError(f"{where}: lattice {self.utt!r}: {msg}{shown}")

    def word(self, label: str, lineno: int, line: str) -> str:
        if not _is_int(label):
            if self.words is not None:
                raise self.fail(lineno, f"label {label!r} is not an integer word id", line)
            return label
        i = int(label)
        if i == 0:
            return EPS
        if self.words is None:
            return label
        if i not in self.words:
            raise self.fail(lineno, f"word id {i} not in the symbol table", line)
        w = self.words[i]
        return EPS if w == EPS else w

    def weight(self, field: str, lineno: int, line: str) -> tuple[float, float, tuple[int, ...]]:
        parts = field.split(",")
        if len(parts) not in (2, 3):
            raise self.fail(lineno, "weight must be 'graph,acoustic[,tids]'", line)
        try:
            graph, acoustic = float(parts[0]), float(parts[1])
            tids = tuple(int(t) for t in parts[2].split("_") if t) if len(parts) == 3 else ()
        except ValueError:
            raise self.fail(lineno, "unparsable weight", line) from None
        if not (math.isfinite(graph) and math.isfinite(acoustic)):
            raise self.fail(lineno, "non-finite weight", line)
        return -acoustic, -graph, tids  # am_score, lm_score, tids

    def parse(self, lines: list[tuple[int, str]], frame_shift: float) -> Lattice:
        arcs: list[Arc] = []
        finals: dict[int, tuple[float, float]] = {}
        start: int | None = None
        form: str | None = None  # "compact" or "lattice"
        for lineno, line in lines:
            f = line.split()
            if not _is_int(f[0]) or (len(f) > 2 and not _is_int(f[1])) or len(f) > 5:
                raise self.fail(lineno, "malformed lattice line", line)
            if len(f) <= 2:  # final state
                s = int(f[0])
                if s < 0:
                    raise self.fail(lineno, "negative state id", line)
                am, lm, _ = self.weight(f[1], lineno, line) if len(f) == 2 else (0.0, 0.0, ())
                # tids on a final weight (from Kaldi determinization) carry no word and
                # are dropped; the state times are unaffected.
                finals[s] = (am, lm)
                start = s if start is None else start
                continue
            this = "compact" if len(f) == 3 or (len(f) == 4 and "," in f[3]) else "lattice"
            if form is not None and this != form:
                raise self.fail(lineno, f"{this} arc in a {form} lattice", line)
            form = this
            src, dst = int(f[0]), int(f[1])
            if src < 0 or dst < 0:
                raise self.fail(lineno, "negative state id", line)
            start = src if start is None else start
            if this == "compact":
                am, lm, tids = self.weight(f[3], lineno, line) if len(f) == 4 else (0.0, 0.0, ())
                arcs.append(Arc(src, dst, self.word(f[2], lineno, line), am, lm, tids=tids))
            else:
                if not _is_int(f[2]):
                    raise self.fail(lineno, "input label must be an integer", line)
                am, lm, tids = self.weight(f[4], lineno, line) if len(f) == 5 else (0.0, 0.0, ())
                if tids:
                    raise self.fail(lineno, "a Lattice weight has no tids", line)
                ilabel = int(f[2])
                arcs.append(Arc(src, dst, self.word(f[3], lineno, line), am, lm,
                                tids=(ilabel,) if ilabel else ()))
        if start is None:
            raise self.fail(lines[0][0] if lines else 0, "empty lattice: no lines")
        # Kaldi state ids need not be dense: number them 0..n-1 in their own order, so
        # memory follows the lines read, never the largest id (a line naming state 5e7
        # would otherwise size every per-state array at 5e7).
        ids = sorted({start, *finals, *(a.src for a in arcs), *(a.dst for a in arcs)})
        if ids[-1] != len(ids) - 1:
            rank = {s: i for i, s in enumerate(ids)}
            arcs = [Arc(rank[a.src], rank[a.dst], a.word, a.am_score, a.lm_score,
                        tids=a.tids) for a in arcs]
            finals = {rank[s]: w for s, w in finals.items()}
            start = rank[start]
        try:
            lat = Lattice(arcs, finals, start=start, utt=self.utt)
        except ValueError as e:
            where = f"{self.source}: " if self.source else ""
            raise ValueError(f"{where}{e}") from None
        frames = _state_frames(lat)
        return Lattice(arcs, finals, [n * frame_shift for n in frames], start=start,
                       utt=self.utt, num_states=lat.num_states)


def _state_frames(lat: Lattice) -> list[int]:
    """Frame index of each state: frames consumed on any path from the start.

    Kaldi lattices are time-synchronous (every path to a state consumes the same number
    of frames); a lattice that is not gets a ValueError naming the utterance.
    """
    frames: list[int | None] = [None] * lat.num_states
    frames[lat.start] = 0
    out = lat.out_arcs
    for s in lat.topo_order:
        if frames[s] is None:
            continue  # not reachable from the start
        for k in out[s]:
            a = lat.arcs[k]
            t = frames[s] + len(a.tids)
            if frames[a.dst] is None:
                frames[a.dst] = t
            elif frames[a.dst] != t:
                raise ValueError(f"lattice {lat.utt!r}: state {a.dst} is reached after both "
                                 f"{frames[a.dst]} and {t} frames; not a Kaldi lattice")
    return [0 if f is None else f for f in frames]


def _split(text: str, utt: str | None) -> Iterator[tuple[str | None, list]]:
    """Split text into ``(utt, [(lineno, line), ...])`` per lattice."""
    lines = text.splitlines()
    cur: list[tuple[int, str]] | None = None
    key = utt
    for i, line in enumerate(lines):
        if not line.strip():
            if cur:
                yield key, cur
            cur, key = None, utt
            continue
        if cur is None:
            cur = []
            f = line.split()
            # A one-field first line is the utterance header, unless it is the numeric
            # final-state line of a one-line lattice (nothing follows it).
            more = i + 1 < len(lines) and bool(lines[i + 1].strip())
            if len(f) == 1 and (not _is_int(f[0]) or more):
                key = f[0] if utt is None else utt
                continue
        cur.append((i + 1, line))
    if cur:
        yield key, cur


def lattice_from_kaldi_text(text: str, *, utt: str | None = None, words: WordTable = None,
                            frame_shift: float = 0.01, source: str = "") -> Lattice:
    """Parse one lattice in Kaldi text form (with or without the utterance header).

    Args:
        text: The lattice text (CompactLattice or Lattice form, e.g. kaldifst
            ``Lattice.to_str()`` of kaldi-decoder's raw lattice).
        utt: Utterance id (default: the header's, else None).
        words: Symbol table (``words.txt`` path or id -> word dict) for integer labels;
            None keeps labels as written (integer ids become their decimal strings).
        frame_shift: Seconds per frame.
        source: Name for error messages (a file name).

    Returns:
        The :class:`Lattice` (dead states kept; see ``Lattice.connect``).

    Raises:
        ValueError: malformed lines (with line number), no final state or path, cycles,
            non-finite weights; the message names the utterance.
    """
    lats = list(_split(text, utt))
    if len(lats) != 1:
        raise ValueError(f"{source or 'text'}: expected one lattice, found {len(lats)} "
                         f"(utt {utt!r})")
    key, lines = lats[0]
    return _Parser(key, _id_to_word(words), source).parse(lines, frame_shift)


def read_kaldi_lattices(path: str | Path, words: WordTable = None,
                        frame_shift: float = 0.01) -> Iterator[Lattice]:
    """Read every lattice of a Kaldi text archive (``ark,t``; ``.gz`` allowed).

    Args:
        path: File (optionally prefixed ``ark:`` / ``ark,t:``; ``.gz`` is gunzipped).
        words: Symbol table for integer labels, see :func:`lattice_from_kaldi_text`.
        frame_shift: Seconds per frame.

    Yields:
        One :class:`Lattice` per utterance, in file order. States are renumbered densely
        (in their order) where the file's ids have gaps.

    Raises:
        ValueError: a malformed or cut-off file (the last line without its newline).
    """
    table = _id_to_word(words)
    try:
        with _open(path, "r") as f:
            text = f.read()
    except (EOFError, OSError, UnicodeDecodeError) as e:  # a cut-off .gz, binary bytes
        raise ValueError(f"{path}: cannot read the lattice archive ({e})") from None
    if text and not text.endswith("\n"):
        # every writer ends lines with a newline: the last line was cut off (a killed job,
        # a full disk); "3 4 w 1,2" cut to "3" would otherwise read as a final state
        lineno = text.count("\n") + 1
        raise ValueError(f"{path}:{lineno}: the file ends in the middle of a line (cut off?): "
                         f"{text.rsplit(chr(10), 1)[-1][:80]!r}")
    for key, lines in _split(text, None):
        if key is None:
            raise ValueError(f"{path}:{lines[0][0]}: lattice without an utterance header")
        yield _Parser(key, table, str(path)).parse(lines, frame_shift)


def _fmt(x: float) -> str:
    x = float(x)
    return "0" if x == 0 else repr(x)


def _word_to_id(words: WordTable) -> dict[str, int] | None:
    table = _id_to_word(words)
    return None if table is None else {w: i for i, w in table.items()}


def lattice_to_kaldi_text(lat: Lattice, *, compact: bool = True, words: WordTable = None,
                          frame_shift: float = 0.01, header: bool = True) -> str:
    """Kaldi text form of a lattice, ending with the blank line Kaldi writes.

    Args:
        lat: The lattice.
        compact: CompactLattice lines (word + tids on one arc); otherwise Lattice lines,
            one arc per transition id (the word and the weight on the first, as Kaldi's
            ``ConvertLattice`` does).
        words: Symbol table to write integer ids (required to write ids; without it
            words are written as they are and ``"<eps>"`` as 0).
        frame_shift: Unused in writing (times are implied by tids); kept for symmetry.
        header: Write the ``"utt \\n"`` header line.

    Returns:
        The text.
    """
    del frame_shift
    w2i = _word_to_id(words)

    def label(w: str) -> str:
        if w == EPS:
            return "0"
        if w2i is None:
            return w
        if w not in w2i:
            raise ValueError(f"lattice {lat.utt!r}: word {w!r} not in the symbol table")
        return str(w2i[w])

    def weight(am: float, lm: float, tids: tuple[int, ...] | None) -> str:
        base = f"{_fmt(-lm)},{_fmt(-am)}"
        return base if tids is None else base + "," + "_".join(map(str, tids))

    out = [f"{lat.utt if lat.utt is not None else 'utt'} \n"] if header else []
    order = [lat.start] + [s for s in lat.topo_order if s != lat.start]
    by_state = lat.out_arcs
    extra = lat.num_states  # new states for multi-frame arcs in the Lattice form
    for s in order:
        for k in by_state[s]:
            a = lat.arcs[k]
            if compact:
                out.append(f"{a.src}\t{a.dst}\t{label(a.word)}\t"
                           f"{weight(a.am_score, a.lm_score, a.tids)}\n")
                continue
            tids = a.tids or (0,)
            src = a.src
            for i, t in enumerate(tids):
                dst = a.dst if i == len(tids) - 1 else extra
                if dst == extra:
                    extra += 1
                if i == 0:
                    out.append(f"{src}\t{dst}\t{t}\t{label(a.word)}\t"
                               f"{weight(a.am_score, a.lm_score, None)}\n")
                else:
                    out.append(f"{src}\t{dst}\t{t}\t0\t0,0\n")
                src = dst
        if s in lat.finals:
            am, lm = lat.finals[s]
            out.append(f"{s}\n" if am == 0 and lm == 0 else
                       f"{s}\t{weight(am, lm, () if compact else None)}\n")
    out.append("\n")
    return "".join(out)


def write_kaldi_lattices(path: str | Path, lattices: Iterable[Lattice], *,
                         compact: bool = True, words: WordTable = None) -> int:
    """Write lattices as a Kaldi text archive (``.gz`` compresses).

    Returns:
        The number of lattices written.
    """
    n = 0
    table = _id_to_word(words)
    with _open(path, "w") as f:
        for lat in lattices:
            f.write(lattice_to_kaldi_text(lat, compact=compact, words=table))
            n += 1
    return n
