"""Few-shot examples for in-context SLU: a labelled pool and a per-query selection.

``ExamplePool.select(query, k)`` returns ``k`` training examples for one query, ordered so
the most useful one is last (nearest the query in the prompt):

* ``similar``: TF-IDF cosine between the query's words and each example's words (for a
  serialized WCN the words of every alternative count; posteriors and separators do not),
  as retrieval-based demonstration selection does; ties broken by pool order;
* ``random``: a seeded sample that depends only on the query text (reproducible);
* ``first``: the first ``k`` of the pool (one fixed prompt prefix for every query);
* ``embedding``: cosine between sentence embeddings (an ``embed`` function given to the
  pool, e.g. MiniLM through ``speechlm.encoders``) of the query's words and of each
  example's text; the query is embedded from the same words similarity sees.

>>> pool = ExamplePool([Example("a", "wake me up at seven", "alarm_set"),
...                     Example("b", "play some jazz", "play_music")])
>>> [e.intent for e in pool.select("play:.6/pay:.4 jazz", 1, "similar")]
['play_music']
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SELECTIONS = ("similar", "random", "first", "embedding")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?|\d+")
_POSTERIOR = re.compile(r":[\d.]+")


@dataclass(frozen=True)
class Example:
    """One labelled training sentence (``id`` from the jsonl)."""

    id: str
    text: str
    intent: str


def words_of(text: str) -> list[str]:
    """Lower-cased words: what similarity sees of a serialized input."""
    return _WORD.findall(_POSTERIOR.sub(" ", text.lower()))


def read_examples(path: str | Path) -> list[Example]:
    """Training jsonl lines ``{"id", "text", "intent"}``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a line that is not JSON, lacks a field, or has an intent with spaces
            (the message names file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not JSON: {e}") from None
            missing = [k for k in ("text", "intent") if not isinstance(row.get(k), str)]
            if missing:
                raise ValueError(f"{path}:{lineno}: needs string field(s) {missing}")
            intent = row["intent"].strip()
            if not intent or len(intent.split()) != 1:
                raise ValueError(f"{path}:{lineno}: intent must be one token, got {intent!r}")
            text = " ".join(row["text"].split())
            if not text:
                raise ValueError(f"{path}:{lineno}: empty text")
            out.append(Example(str(row.get("id", f"{path.name}:{lineno}")), text, intent))
    if not out:
        raise ValueError(f"{path} holds no examples")
    return out


def write_examples(examples: Sequence[Example], path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for e in examples:
            f.write(json.dumps(asdict(e)) + "\n")


# texts -> (N, D) L2-normalised embeddings
EmbedFn = Callable[[Sequence[str]], np.ndarray]


class ExamplePool:
    """Labelled examples, a TF-IDF index over their words and, with ``embed``, their
    sentence embeddings (computed on the first ``embedding`` selection)."""

    def __init__(self, examples: Sequence[Example], embed: EmbedFn | None = None) -> None:
        if not examples:
            raise ValueError("the example pool is empty")
        self.examples = list(examples)
        self.embed = embed
        self._emb: np.ndarray | None = None  # (N, D)
        docs = [Counter(words_of(e.text)) for e in self.examples]
        df = Counter(w for d in docs for w in d)
        n = len(docs)
        self._idf = {w: math.log((1 + n) / (1 + c)) + 1.0 for w, c in df.items()}
        self._vecs = [self._vector(d) for d in docs]

    def _vector(self, counts: Counter) -> dict[str, float]:
        vec = {w: c * self._idf.get(w, 0.0) for w, c in counts.items()}
        norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
        return {w: v / norm for w, v in vec.items()}

    def select(self, query: str, k: int, how: str = "similar") -> list[Example]:
        """``k`` examples for ``query``, least useful first (the best sits next to the query)."""
        if how not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {how!r}")
        k = min(k, len(self.examples))
        if k <= 0:
            return []
        if how == "first":
            return self.examples[:k]
        if how == "random":
            seed = int.from_bytes(hashlib.sha256(query.encode()).digest()[:8], "big")
            return random.Random(seed).sample(self.examples, k)
        if how == "embedding":
            sims = self._embedding_sims(query)
        else:
            q = self._vector(Counter(words_of(query)))
            sims = [sum(v * q.get(w, 0.0) for w, v in vec.items()) for vec in self._vecs]
        best = sorted(range(len(sims)), key=lambda i: (-sims[i], i))[:k]
        return [self.examples[i] for i in reversed(best)]

    def _embedding_sims(self, query: str) -> list[float]:
        return [float(x) for x in self.embedding_similarities([(query, 1.0)])]

    def embedding_similarities(self, hyps: Sequence[tuple[str, float]]) -> np.ndarray:
        """Cosine of each example's sentence embedding with the query's expected embedding:
        the ``(text, weight)`` hypotheses' unit embeddings (of their words) averaged with the
        weights, e.g. the paths of a WCN with their posteriors; one ``(text, 1.0)`` is a plain
        query. Hypotheses without words count for nothing; with no words at all every example
        ties at 0."""
        if self.embed is None:
            raise ValueError("selection 'embedding' needs a pool built with an embed function")
        if self._emb is None:
            self._emb = _unit(self.embed([e.text for e in self.examples]), len(self.examples))
        kept = [(" ".join(words_of(t)), w) for t, w in hyps]
        kept = [(t, w) for t, w in kept if t and w > 0]
        if not kept:
            return np.zeros(len(self.examples), dtype=np.float32)
        vecs = _unit(self.embed([t for t, _ in kept]), len(kept))
        if len(kept) == 1:  # one query: its unit embedding as is (the shots of before, bitwise)
            return self._emb @ vecs[0]
        q = (np.asarray([w for _, w in kept], dtype=np.float32)[:, None] * vecs).sum(axis=0)
        return self._emb @ (q / max(float(np.linalg.norm(q)), 1e-12))


def _unit(x: np.ndarray, n: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != n:
        raise ValueError(f"embed returned shape {x.shape} for {n} texts, want ({n}, D)")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
