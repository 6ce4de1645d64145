"""Speaker and sentence encoders behind one small interface, with a disk cache.

>>> enc = load_encoder("minilm-l6", cache=True)  # doctest: +SKIP
>>> enc.name, enc.dim, enc.embed(["hello there"]).shape  # doctest: +SKIP
('minilm-l6', 384, (1, 384))

Catalogue encoders: ``resemblyzer`` (speaker, 256-dim), ``minilm-l6`` (sentence, 384),
``mpnet-base`` (sentence, 768). A local dir works too: a transformers / sentence-transformers
model dir becomes a :class:`SentenceEncoder`, a dir or file with a Resemblyzer ``.pt`` a
:class:`SpeakerEncoder`. Model classes are imported on first use, so importing this package
does not load torch or transformers.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechlm.core import catalogue
from speechlm.encoders.base import Encoder, EncoderError

if TYPE_CHECKING:
    from speechlm.encoders.cache import CachedEncoder
    from speechlm.encoders.sentence import SentenceEncoder
    from speechlm.encoders.speaker import SpeakerEncoder

__all__ = ["CachedEncoder", "Encoder", "EncoderError", "SentenceEncoder", "SpeakerEncoder",
           "encoder_names", "load_encoder"]

_LAZY = {"CachedEncoder": "cache", "SentenceEncoder": "sentence", "SpeakerEncoder": "speaker"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"speechlm.encoders.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'speechlm.encoders' has no attribute {name!r}")


def encoder_names() -> list[str]:
    """Catalogue names of the encoders (speaker and sentence)."""
    return catalogue.names("speaker") + catalogue.names("sentence")


def load_encoder(name_or_dir: str | os.PathLike, *, cache: bool | str | os.PathLike = False,
                 **kwargs: Any) -> Encoder:
    """An encoder by catalogue name or local path.

    Args:
        name_or_dir: ``resemblyzer``, ``minilm-l6``, ``mpnet-base``, or a local model dir /
            Resemblyzer ``.pt`` file.
        cache: ``True`` for a disk cache under ``catalogue.cache_dir()/embeddings``, or a
            cache dir; ``False`` for none.
        **kwargs: passed to the encoder class (``batch_size``, ``device``...).

    Raises:
        ValueError: neither an encoder's catalogue name nor an existing path (lists the names),
            or a catalogue model of another task.
        speechlm.core.catalogue.ModelNotInstalled: its package is missing (names the pip
            command).
    """
    from speechlm.encoders.sentence import SentenceEncoder
    from speechlm.encoders.speaker import SpeakerEncoder

    enc: Encoder
    if catalogue.is_local_dir(name_or_dir):
        p = Path(name_or_dir)
        is_sentence = p.is_dir() and ((p / "config.json").is_file()
                                      or (p / "modules.json").is_file())
        enc = SentenceEncoder(p, **kwargs) if is_sentence else SpeakerEncoder(p, **kwargs)
    else:
        name = str(name_or_dir)
        if name not in encoder_names():
            what = (f"a {catalogue.MODELS[name].task} model, not an encoder"
                    if name in catalogue.MODELS else "not a catalogue encoder nor a path")
            raise ValueError(f"{name!r} is {what}; encoders: {', '.join(encoder_names())}")
        cls = SpeakerEncoder if catalogue.get(name).task == "speaker" else SentenceEncoder
        enc = cls(name, **kwargs)
    if cache is False:
        return enc
    from speechlm.encoders.cache import CachedEncoder

    return CachedEncoder(enc, None if cache is True else cache)
