"""The one small interface every encoder has: a name, a dimension and a batched ``embed``.

Speaker and sentence encoders differ only in what an *item* is (audio or text). Each encoder
also says what bytes of an item decide its embedding (:meth:`Encoder.content`) and what
identifies its weights (:attr:`Encoder.fingerprint`), so one disk cache
(:mod:`speechlm.encoders.cache`) serves them all.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

__all__ = ["Encoder", "EncoderError"]


class EncoderError(ValueError):
    """An item an encoder cannot embed (the message names the item by its index)."""


class Encoder(ABC):
    """Maps items to fixed-size float32 vectors.

    Attributes:
        name: catalogue name (``minilm-l6``) or the local path the model came from.
        dim: embedding size.
        kind: ``"speaker"`` or ``"sentence"``: what an item is.
        fingerprint: identifies the weights (the cache keys on it); the catalogue name, or a
            local path with its weights' size and modification time.
    """

    kind: ClassVar[str] = ""
    name: str
    dim: int
    fingerprint: str

    @abstractmethod
    def embed(self, items: Sequence[Any]) -> np.ndarray:
        """Embed ``items`` in batches.

        Returns:
            (N, dim) float32, row i for ``items[i]``; (0, dim) for no items.

        Raises:
            EncoderError: an item of the wrong type or with nothing to embed, naming its index.
        """

    @abstractmethod
    def content(self, item: Any) -> bytes:
        """The bytes that decide ``item``'s embedding (hashed as the cache key)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


def empty(dim: int) -> np.ndarray:
    """(0, dim) float32: what ``embed([])`` returns."""
    return np.zeros((0, dim), dtype=np.float32)


def local_fingerprint(weights: Any) -> str:
    """Fingerprint of a user's own weights file: resolved path, size and modification time.

    Content hashes of hundreds of MB would cost more than the embeddings they guard; a changed
    file gets a new size or time, and with it a fresh cache.
    """
    from pathlib import Path

    p = Path(weights).resolve()
    st = p.stat()
    return f"{p}:{st.st_size}:{st.st_mtime_ns}"
