"""Speech of a dialogue's turns: the recording of each utterance and its embedding.

Recordings come from a Kaldi ``wav.scp`` whose ids are the turns' :attr:`Turn.utt`
(``dia<D>_utt<III>``); MELD's own names (``dia<D>_utt<I>``, as its ``.mp4`` files are
called) are accepted too. ``egs/meld/paralin1`` writes one by synthesis, or takes the
user's (``--wav_scp``) when real recordings exist.

Two kinds of utterance embedding (one vector per utterance, the speech slot of
:mod:`speechlm.paralin.serialize`):

- ``whisper``: the mean over time of the Whisper encoder's states (``WhisperEncoder``,
  unpadded tiny.en, 384-dim): what was said and how;
- ``resemblyzer``: the GE2E speaker embedding (256-dim): who speaks.

Both are cached on disk by content (``speechlm.encoders.CachedEncoder``: the key hashes the
encoder and the audio file's bytes), so the recipe's embedding stage computes them once and
training and evaluation only read them.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from speechlm.data.audio import is_pipe, read_audio
from speechlm.data.kaldi_dir import read_table
from speechlm.encoders.base import Encoder, EncoderError, empty
from speechlm.paralin.meld import Turn

SPEECH_KINDS = ("whisper", "resemblyzer")


class SpeechInputError(ValueError):
    """A turn without usable audio (the message names the utterance and the wav.scp)."""


def read_wav_scp(path: str | os.PathLike) -> dict[str, str]:
    """``utt -> entry`` of a Kaldi wav.scp (a path, or a command ending in ``|``)."""
    if not Path(path).is_file():
        raise SpeechInputError(f"{path}: wav.scp does not exist")
    return {key: value for _, key, value in read_table(Path(path))}


def wav_entries(turns: Iterable[Turn], wav_scp: str | os.PathLike) -> dict[str, str]:
    """The wav.scp entry of every turn, checked before any model is loaded.

    Raises:
        SpeechInputError: a turn with no entry, or whose file does not exist, naming the
            utterance, its dialogue and ``Utterance_ID``, and the wav.scp.
    """
    table = read_wav_scp(wav_scp)
    out: dict[str, str] = {}
    for t in turns:
        if t.utt in out:
            continue
        entry = table.get(t.utt, table.get(f"dia{t.dialogue}_utt{t.index}"))
        where = (f"utterance {t.utt} (Dialogue_ID {t.dialogue}, Utterance_ID {t.index}, "
                 f"{t.speaker}: {t.text[:40]!r})")
        if entry is None:
            raise SpeechInputError(f"{where} has no entry in {wav_scp}")
        if not is_pipe(entry) and not Path(entry).is_file():
            raise SpeechInputError(f"{where}: {entry} (from {wav_scp}) does not exist")
        out[t.utt] = entry
    return out


class PooledWhisper(Encoder):
    """Utterance vectors: the time average of ``WhisperEncoder`` states.

    Args:
        model: Whisper catalogue name or CTranslate2 dir.
        threads: CTranslate2 threads.
    """

    kind = "speech"

    def __init__(self, model: str = "whisper-tiny.en", *, threads: int = 1) -> None:
        from speechlm.asr.whisper_encoder import WhisperEncoder

        self.encoder = WhisperEncoder(model, threads=threads)
        self.name = f"pooled-{model}"
        self.fingerprint = f"pooled-mean|{model}"
        self.dim = self.encoder.dim

    def content(self, item: str | os.PathLike | np.ndarray) -> bytes:
        if isinstance(item, (str, os.PathLike)) and not is_pipe(str(item)):
            return b"file\0" + Path(item).read_bytes()  # content, so a moved corpus hits
        if isinstance(item, (str, os.PathLike)):
            return b"pipe\0" + str(item).encode()
        return b"pcm16000\0" + np.ascontiguousarray(item, np.float32).tobytes()

    def embed(self, items: Sequence[str | os.PathLike | np.ndarray]) -> np.ndarray:
        if not len(items):
            return empty(self.dim)
        out = np.empty((len(items), self.dim), np.float32)
        for i, item in enumerate(items):
            if isinstance(item, np.ndarray):
                samples = item
            elif isinstance(item, (str, os.PathLike)):
                samples = read_audio(str(item), utt=f"item {i}", target_sample_rate=16000)
            else:
                raise EncoderError(f"item {i}: expected audio samples or a path, got "
                                   f"{type(item).__name__}")
            out[i] = self.encoder(samples, utt=f"item {i}").mean(axis=0)
        return out


def load_speech_encoder(kind: str, cache_dir: str | os.PathLike | None = None) -> Encoder:
    """The cached encoder of ``kind`` (one of :data:`SPEECH_KINDS`)."""
    from speechlm.encoders.cache import CachedEncoder

    if kind == "whisper":
        enc: Encoder = PooledWhisper()
    elif kind == "resemblyzer":
        from speechlm.encoders.speaker import SpeakerEncoder

        enc = SpeakerEncoder("resemblyzer")
    else:
        raise ValueError(f"unknown speech embedding kind {kind!r}; kinds: "
                         f"{', '.join(SPEECH_KINDS)}")
    return CachedEncoder(enc, cache_dir)


def utterance_embeddings(entries: dict[str, str], kind: str,
                         cache_dir: str | os.PathLike | None = None,
                         batch: int = 64, stats: dict | None = None) -> dict[str, np.ndarray]:
    """``utt -> (dim,) float32`` for every entry of :func:`wav_entries` (cached); ``stats``,
    when given, gets the cache's ``hits`` and ``misses`` (computed now)."""
    enc = load_speech_encoder(kind, cache_dir)
    utts = sorted(entries)
    out: dict[str, np.ndarray] = {}
    for b in range(0, len(utts), batch):
        chunk = utts[b:b + batch]
        try:
            vecs = enc.embed([entries[u] for u in chunk])
        except (EncoderError, ValueError) as e:  # name the utterance, not "item i"
            raise SpeechInputError(f"{kind} embeddings of {chunk[0]}..{chunk[-1]}: {e}") from e
        out.update(zip(chunk, vecs, strict=True))
    if stats is not None:
        stats.update(hits=enc.hits, misses=enc.misses)
    return out
