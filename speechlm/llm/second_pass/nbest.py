"""N-best lists of the HyPoradise form, checked, and the speaker split rule.

This module owns the HyPoradise format: a JSON list (or JSON lines) of objects, one per
utterance, each with ``input`` (the N-best, best first) and ``output`` (the reference)::

    [{"instruction": "...", "input": ["hyp 1", "hyp 2", ...], "output": "reference"}, ...]

The toolkit's own ``nbest.jsonl`` (``speechlm decode``: ``{"utt", "hyps": [{"text",
"score"}]}``) is read too, its scores becoming the first-pass scores; its references come
from a Kaldi text (``refs``).

Optional fields are read where present: an utterance id (``id``, ``utt_id``, ``utt`` or
``key``) and first-pass scores (``scores`` or ``am_score``: one natural-log float per
hypothesis, higher is better). Without ids, utterances are named ``<file stem>-<index>``.

Bad input never stops the reading of the other utterances; each problem becomes a
:class:`Note` naming the utterance:

* an empty list: the utterance stays, with no hypotheses (its output is empty);
* an empty hypothesis: dropped; a duplicate: dropped (the first, higher-ranked copy stays);
* no reference: kept for rescoring, ``ref`` is None and scoring skips it;
* a file that is not UTF-8 is refused (:class:`~speechlm.core.errors.InputError`) with the
  byte offset and, where it can be found, the utterance holding the bad bytes.

>>> items, notes = parse_nbest([{"input": ["a b", "a b", ""], "output": "a b"}], "x")
>>> items[0].hyps, [n.kind for n in notes]
(('a b',), ['duplicate', 'empty_hypothesis'])
"""
from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from speechlm.core.errors import InputError

__all__ = ["NbestItem", "Note", "folds", "groups_of", "parse_nbest", "read_nbest", "speaker_of",
           "split_by_speaker"]

ID_FIELDS = ("id", "utt_id", "utt", "key")
SCORE_FIELDS = ("scores", "am_score")


@dataclass(frozen=True)
class NbestItem:
    """One utterance: hypotheses best first, the reference if known, first-pass scores.

    >>> NbestItem("u1", ("a b", "a c"), "a b").first_pass
    (-0.0, -1.0)
    """

    utt: str
    hyps: tuple[str, ...]
    ref: str | None = None
    scores: tuple[float, ...] | None = None

    @property
    def first_pass(self) -> tuple[float, ...]:
        """The first pass's scores, or the rank prior ``-rank`` where none are given (the
        list order is the first pass's ranking, so it is information worth keeping)."""
        if self.scores is not None:
            return self.scores
        return tuple(-float(k) for k in range(len(self.hyps)))  # -0.0 first


@dataclass(frozen=True)
class Note:
    """A problem found in the input, kept beside the outputs (``notes.txt``)."""

    utt: str
    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.utt}: {self.kind}: {self.message}"


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        where = ""
        try:  # find the utterance: decode leniently and look for the replacement char
            objs = _loads(raw.decode("utf-8", errors="replace"), path)
            bad = [i for i, o in enumerate(objs) if "\ufffd" in json.dumps(o, ensure_ascii=False)]
            if bad:
                where = f" (utterance {_utt_of(objs[bad[0]], path, bad[0])})"
        except (InputError, ValueError):
            pass
        raise InputError(f"{path}: not UTF-8 at byte {e.start}{where}") from None


def _loads(text: str, path: Path) -> list:
    text = text.lstrip("\ufeff")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: not valid JSON ({e})") from None
        return data
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{n}: not a JSON line ({e})") from None
    return out


def _utt_of(obj: object, path: Path | str, index: int) -> str:
    if isinstance(obj, dict):
        for f in ID_FIELDS:
            if isinstance(obj.get(f), (str, int)) and str(obj[f]).strip():
                return str(obj[f]).strip()
    return f"{Path(path).stem}-{index:05d}"


def read_nbest(path: str | os.PathLike, max_hyps: int | None = None,
               refs: dict[str, str] | None = None) -> tuple[list[NbestItem], list[Note]]:
    """Read a HyPoradise-form file: the utterances (file order) and the notes on bad input.

    ``refs`` (utt -> reference) fills in references the file does not hold (an
    ``nbest.jsonl`` has none).

    Raises:
        FileNotFoundError: no such file.
        InputError: not UTF-8, not JSON, not a list of objects with ``input``, a duplicate
            utterance id, a malformed score list, or no utterance at all.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such N-best file")
    data = _loads(_decode(path, path.read_bytes()), path)
    if isinstance(data, list):
        data = [_from_nbest_jsonl(o) for o in data]
        if refs:
            data = [{**o, "output": refs.get(_utt_of(o, path, i), o.get("output"))}
                    if isinstance(o, dict) else o for i, o in enumerate(data)]
    return parse_nbest(data, path, max_hyps)


def _from_nbest_jsonl(obj: object) -> object:
    """An ``nbest.jsonl`` line as a HyPoradise-form object (other objects unchanged)."""
    if not (isinstance(obj, dict) and "hyps" in obj and "input" not in obj
            and isinstance(obj["hyps"], list)):
        return obj
    hyps = [h for h in obj["hyps"] if isinstance(h, dict)]
    return {"id": obj.get("utt"), "input": [h.get("text") for h in hyps],
            "scores": [h.get("score") for h in hyps], "output": obj.get("ref")}


def parse_nbest(data: Sequence, path: str | os.PathLike = "<input>",
                max_hyps: int | None = None) -> tuple[list[NbestItem], list[Note]]:
    """The objects of a HyPoradise-form file, already parsed (see :func:`read_nbest`)."""
    if not isinstance(data, list) or not data:
        raise InputError(f"{path}: expected a non-empty JSON list of utterances")
    items: list[NbestItem] = []
    notes: list[Note] = []
    seen: set[str] = set()
    for i, obj in enumerate(data):
        utt = _utt_of(obj, path, i)
        if not isinstance(obj, dict) or "input" not in obj:
            raise InputError(f"{path}: utterance {utt} (entry {i}): no 'input' list")
        if utt in seen:
            raise InputError(f"{path}: utterance {utt} (entry {i}): duplicate utterance id")
        seen.add(utt)
        raw = obj["input"]
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not all(isinstance(h, str) for h in raw):
            raise InputError(f"{path}: utterance {utt}: 'input' must be a list of strings")
        scores = next((obj[f] for f in SCORE_FIELDS if obj.get(f) is not None), None)
        if scores is not None:
            if (not isinstance(scores, list) or len(scores) != len(raw)
                    or not all(isinstance(s, (int, float)) and math.isfinite(s) for s in scores)):
                raise InputError(f"{path}: utterance {utt}: scores must be {len(raw)} finite "
                                 "numbers, one per hypothesis")
        hyps, kept = [], []
        for k, h in enumerate(raw):
            text = " ".join(h.split())
            if not text:
                notes.append(Note(utt, "empty_hypothesis", f"hypothesis {k + 1} is empty: "
                                                           "dropped"))
            elif text in hyps:
                notes.append(Note(utt, "duplicate", f"hypothesis {k + 1} repeats hypothesis "
                                                    f"{hyps.index(text) + 1}: dropped"))
            else:
                hyps.append(text)
                kept.append(k)
        if not raw:
            notes.append(Note(utt, "empty_list", "no hypotheses: the output is empty"))
        if max_hyps is not None and len(hyps) > max_hyps:
            hyps, kept = hyps[:max_hyps], kept[:max_hyps]
        ref = obj.get("output")
        if not isinstance(ref, str) or not ref.strip():
            notes.append(Note(utt, "missing_reference", "no reference: scoring skipped, "
                                                        "rescoring still runs"))
            ref = None
        else:
            ref = " ".join(ref.split())
        items.append(NbestItem(utt, tuple(hyps), ref,
                               None if scores is None else tuple(float(scores[k]) for k in kept)))
    return items, notes


# ---- the split rule ---------------------------------------------------------------------
_LIBRI = re.compile(r"^(?P<spk>[^-_\s]+)[-_][^-_\s]+[-_][^-_\s]+$")


def speaker_of(utt: str) -> str | None:
    """The speaker in an utterance id of the Kaldi/LibriSpeech form ``SPK-CHAPTER-UTT``
    (or ``SPK_..._...``); None for an id without one (e.g. a synthesized ``file-00012``).

    >>> speaker_of("1089-134686-0000"), speaker_of("test_ls_clean-00012")
    ('1089', None)
    """
    m = _LIBRI.match(utt)
    return m.group("spk") if m else None


def groups_of(items: Sequence[NbestItem], block: int = 50) -> list[str]:
    """The split group of each utterance: its speaker when *every* id names one, else the
    contiguous block of ``block`` utterances it falls in (``block-0003``). Corpora list a
    speaker's utterances together, so contiguous blocks keep most speakers on one side."""
    spk = [speaker_of(it.utt) for it in items]
    if items and all(s is not None for s in spk):
        return [str(s) for s in spk]
    return [f"block-{i // block:04d}" for i in range(len(items))]


def split_by_speaker(items: Sequence[NbestItem], share: float = 0.5, *, block: int = 50
                     ) -> tuple[list[NbestItem], list[NbestItem]]:
    """Split into two parts with no speaker (or block, see :func:`groups_of`) on both sides.

    Groups are taken in order of first appearance; the first part gets whole groups until
    it holds ``share`` of the utterances (the group that crosses the line goes to the part
    it fills least), the second part the rest. Deterministic: no shuffling.

    >>> its = [NbestItem(u, ("x",)) for u in ("1-1-1", "1-1-2", "2-1-1", "3-1-1")]
    >>> [[i.utt for i in part] for part in split_by_speaker(its)]
    [['1-1-1', '1-1-2'], ['2-1-1', '3-1-1']]
    """
    if not 0 < share < 1:
        raise ValueError(f"share must be in (0, 1), got {share}")
    groups = groups_of(items, block)
    order = list(dict.fromkeys(groups))
    size = {g: groups.count(g) for g in order}
    first: set[str] = set()
    n, target = 0, share * len(items)
    for g in order:
        if n >= target:
            break
        if n + size[g] <= target or (target - n) > (n + size[g] - target):
            first.add(g)
            n += size[g]
        else:
            break
    a = [it for it, g in zip(items, groups, strict=True) if g in first]
    b = [it for it, g in zip(items, groups, strict=True) if g not in first]
    return a, b


def folds(items: Sequence[NbestItem], k: int = 2, *, block: int = 50
          ) -> list[list[NbestItem]]:
    """``k`` speaker-disjoint folds for cross-fitting (groups dealt round-robin in order of
    first appearance)."""
    if k < 2:
        raise ValueError(f"k must be >= 2, got {k}")
    groups = groups_of(items, block)
    index = {g: j % k for j, g in enumerate(dict.fromkeys(groups))}
    return [[it for it, g in zip(items, groups, strict=True) if index[g] == f] for f in range(k)]
