"""A disk cache of embeddings keyed by content, so re-embedding a corpus is cheap.

Each embedding is one ``.npy`` file named by ``sha256(encoder fingerprint, item content)``
under ``<cache dir>/<encoder name>/<2 hex>/``. Files are written to a temporary name and
renamed into place, so readers never see a partial file and concurrent writers of the same
item (same bytes) cannot corrupt it; an interrupted run keeps what it finished, and the
next run computes only the rest. A file that does not load as a ``(dim,)`` float32 vector
(disk trouble) is recomputed and replaced.

>>> enc = CachedEncoder(load_encoder("minilm-l6"), "/tmp/emb")  # doctest: +SKIP
>>> enc.embed(sentences)  # computes; a second call only reads  # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from speechlm.core import catalogue
from speechlm.encoders.base import Encoder

__all__ = ["CachedEncoder"]

log = logging.getLogger(__name__)


class CachedEncoder(Encoder):
    """Wraps an encoder: ``embed`` reads cached rows and computes only the missing ones.

    Args:
        encoder: the encoder whose embeddings are cached.
        cache_dir: root of the cache; default ``catalogue.cache_dir() / "embeddings"``.

    Attributes:
        hits, misses: items read from / computed for the cache since creation.
    """

    def __init__(self, encoder: Encoder, cache_dir: str | os.PathLike | None = None) -> None:
        self.encoder = encoder
        self.kind, self.name, self.dim = encoder.kind, encoder.name, encoder.dim
        self.fingerprint = encoder.fingerprint
        root = Path(cache_dir) if cache_dir is not None else catalogue.cache_dir() / "embeddings"
        # A readable folder name per model; the fingerprint in the hash keeps models apart.
        self.dir = root / re.sub(r"[^A-Za-z0-9_.-]+", "_", self.name).strip("_.")
        self.hits = self.misses = 0

    def content(self, item: Any) -> bytes:
        return self.encoder.content(item)

    def key(self, item: Any) -> str:
        """Hex sha256 of the encoder fingerprint and the item's content."""
        h = hashlib.sha256(self.fingerprint.encode() + b"\0")
        h.update(self.encoder.content(item))
        return h.hexdigest()

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.npy"

    def _read(self, path: Path) -> np.ndarray | None:
        try:
            vec = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            log.warning("embedding cache: %s is unreadable (%s); recomputing", path, e)
            return None
        if vec.shape != (self.dim,) or vec.dtype != np.float32:
            log.warning("embedding cache: %s holds %s %s, not (%d,) float32; recomputing",
                        path, vec.shape, vec.dtype, self.dim)
            return None
        return vec

    def _write(self, path: Path, vec: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, vec)
            os.replace(tmp, path)  # atomic: a reader sees the old file or the whole new one
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def embed(self, items: Sequence[Any]) -> np.ndarray:
        """Like the wrapped encoder's ``embed``; cached rows are bit-identical to computed."""
        out = np.empty((len(items), self.dim), dtype=np.float32)
        paths = [self._path(self.key(item)) for item in items]
        todo: dict[Path, list[int]] = {}  # one computation per distinct content
        for i, path in enumerate(paths):
            if path in todo:
                todo[path].append(i)
                continue
            vec = self._read(path)
            if vec is None:
                todo[path] = [i]
            else:
                out[i] = vec
                self.hits += 1
        if todo:
            firsts = [rows[0] for rows in todo.values()]
            vecs = self.encoder.embed([items[i] for i in firsts])
            for (path, rows), vec in zip(todo.items(), vecs, strict=True):
                self._write(path, vec)
                out[rows] = vec
            self.misses += len(todo)
        return out
