"""SNIPS NLU benchmark files (sonos/nlu-benchmark, 2017-06 custom intent engines).

One JSON file per intent and split: ``{"<Intent>": [{"data": [chunk, ...]}, ...]}``, where a
chunk is ``{"text": ...}`` and, for a slot, also ``"entity": <slot type>``. The utterance is
the concatenation of the chunks' text; the chunks with an entity are its slot spans.
Training files are ``train_<Intent>_full.json`` (about 2,000 rows) and ``train_<Intent>.json``
(300 rows); the benchmark's test split is ``validate_<Intent>.json`` (100 rows).

Bytes that are not UTF-8 (upstream's ``train_PlayMusic_full.json`` has 6, in one playlist
name) are read as U+FFFD with a ``SnipsEncodingWarning`` naming the file and the rows; any
other departure from the form is an ``InputError`` naming the file and the row.

>>> u = parse_row("GetWeather", 0, {"data": [{"text": "rain in "},
...     {"text": "Paris", "entity": "city"}]}, "x.json")
>>> u.text, u.spans
('rain in Paris', (('city', 'Paris'),))
"""
from __future__ import annotations

import json
import random
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from speechlm.core.errors import InputError

__all__ = ["SnipsEncodingWarning", "SnipsUtterance", "parse_row", "read_snips_dir",
           "read_snips_file", "split_per_intent"]


class SnipsEncodingWarning(UserWarning):
    """Bytes that are not UTF-8 were replaced by U+FFFD (file and rows named)."""


@dataclass(frozen=True)
class SnipsUtterance:
    """One SNIPS query: its intent, its row in the file, the raw text and the slot spans
    ``((slot type, span text), ...)`` in order."""

    intent: str
    row: int
    text: str
    spans: tuple[tuple[str, str], ...]


def parse_row(intent: str, row: int, item, path: str | Path) -> SnipsUtterance:
    """One ``{"data": [chunk, ...]}`` row; ``InputError`` names ``path`` and the row."""
    where = f"{path}: {intent} row {row}"
    chunks = item.get("data") if isinstance(item, dict) else None
    if not isinstance(chunks, list):
        raise InputError(f"{where}: not a SNIPS row (expected {{\"data\": [chunks]}})")
    parts, spans = [], []
    for k, chunk in enumerate(chunks):
        if not isinstance(chunk, dict) or not isinstance(chunk.get("text"), str):
            raise InputError(f"{where}: chunk {k} has no 'text' string")
        parts.append(chunk["text"])
        entity = chunk.get("entity")
        if entity is not None:
            if not isinstance(entity, str) or not entity.strip():
                raise InputError(f"{where}: chunk {k} has an 'entity' that is not a name")
            spans.append((entity.strip(), " ".join(chunk["text"].split())))
    text = "".join(parts)
    if not text.strip():
        raise InputError(f"{where}: no text")
    return SnipsUtterance(intent, row, text, tuple(spans))


def read_snips_file(path: str | Path) -> list[SnipsUtterance]:
    """Every row of one SNIPS file, in file order (``row`` counts from 0 within an intent)."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8"))
        bad_bytes = False
    except UnicodeDecodeError:
        data, bad_bytes = None, True
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not JSON ({e})") from None
    if bad_bytes:
        try:
            data = json.loads(raw.decode("utf-8", errors="replace"))
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: not JSON ({e})") from None
    if not isinstance(data, dict) or not data or not all(
            isinstance(v, list) for v in data.values()):
        raise InputError(f"{path}: not a SNIPS file (expected {{\"<Intent>\": [rows]}})")
    out = [parse_row(intent, k, item, path)
           for intent, items in data.items() for k, item in enumerate(items)]
    if bad_bytes:
        rows = [f"{u.intent} row {u.row}" for u in out if "\ufffd" in u.text]
        warnings.warn(f"{path}: invalid UTF-8 bytes read as U+FFFD (errors='replace') in "
                      f"{', '.join(rows) or 'no row text'}", SnipsEncodingWarning, stacklevel=2)
    return out


def read_snips_dir(directory: str | Path, pattern: str) -> list[SnipsUtterance]:
    """The rows of every ``pattern`` file of ``directory`` (sorted by file name)."""
    paths = sorted(Path(directory).glob(pattern))
    if not paths:
        raise InputError(f"{directory}: no SNIPS file matches {pattern!r}")
    return [u for p in paths for u in read_snips_file(p)]


def split_per_intent(rows: Iterable[dict], n_dev: int, n_test: int, seed: int = 0,
                     key: str = "text") -> dict[str, list[dict]]:
    """Split rows into ``train`` / ``dev`` / ``test`` by distinct sentence, per intent.

    For every intent (sorted), its distinct sentences (``row[key]``, sorted) are shuffled with
    ``random.Random(f"{seed}:{intent}")``; the first ``n_test`` are test, the next ``n_dev``
    dev, the rest train. A dev or test sentence keeps one row (the first); every row of a
    training sentence stays. A sentence that occurs under two intents is left out of dev and
    test (it could not be scored) and stays in training.

    >>> rows = [{"text": f"s{i}", "intent": "A" if i < 6 else "B"} for i in range(10)]
    >>> parts = split_per_intent(rows, 1, 2)
    >>> [len(parts[p]) for p in ("train", "dev", "test")]
    [4, 2, 4]
    """
    rows = list(rows)
    intents_of: dict[str, set[str]] = {}
    for r in rows:
        intents_of.setdefault(r[key], set()).add(r["intent"])
    part: dict[str, str] = {}
    for intent in sorted({r["intent"] for r in rows}):
        sentences = sorted({r[key] for r in rows if r["intent"] == intent
                            and len(intents_of[r[key]]) == 1})
        random.Random(f"{seed}:{intent}").shuffle(sentences)
        for s in sentences[:n_test]:
            part[s] = "test"
        for s in sentences[n_test:n_test + n_dev]:
            part[s] = "dev"
    out: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    seen: set[str] = set()
    for r in rows:
        p = part.get(r[key], "train")
        if p != "train" and r[key] in seen:
            continue
        seen.add(r[key])
        out[p].append(r)
    return out
