"""Speaker embeddings with Resemblyzer's GE2E encoder (256-dim, 16 kHz).

Resemblyzer embeds one utterance as the L2-normalised mean of its 1.6 s *partials* (40-band
mel frames, 160 per partial, a new partial every 1/1.3 s), each run through a 3-layer LSTM.
``VoiceEncoder.embed_utterance`` runs one utterance's partials at a time; we cut every
utterance of a batch into partials, run them through the LSTM together (all partials have the
same length, so there is no padding), then average per utterance: the same vectors, in fewer
forward passes. Audio is prepared as Resemblyzer's ``preprocess_wav`` does (volume raised to
-30 dBFS, silences longer than ~0.2 s cut by webrtcvad), after our own reading and resampling
(``speechlm.data.audio``: any format a ``wav.scp`` may name, any rate).

>>> enc = SpeakerEncoder()  # doctest: +SKIP
>>> enc.embed(["a.wav", np.zeros(16000, np.float32) + 0.1]).shape  # doctest: +SKIP
(2, 256)
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from speechlm.core import catalogue
from speechlm.data.audio import read_audio, resample
from speechlm.encoders.base import Encoder, EncoderError, empty, local_fingerprint

__all__ = ["SAMPLE_RATE", "SpeakerEncoder"]

SAMPLE_RATE = 16000  # Resemblyzer's hparams.sampling_rate
# An item: samples at 16 kHz, (samples, sample_rate), or an audio file path / wav.scp entry.
AudioItem = np.ndarray | tuple | str | os.PathLike


def _weights_path(name_or_path: str | os.PathLike) -> tuple[Path, str, str]:
    """(weights file, name, fingerprint) of a catalogue name, a ``.pt`` file or a dir."""
    if catalogue.is_local_dir(name_or_path):
        p = Path(name_or_path)
        if p.is_dir():
            pts = sorted(p.glob("*.pt"))
            if len(pts) != 1:
                raise catalogue.ModelFileError(f"{p}: expected one .pt speaker-encoder file, "
                                               f"found {[x.name for x in pts]}")
            p = pts[0]
        return p, str(name_or_path), local_fingerprint(p)
    card = catalogue.get(str(name_or_path))
    if card.task != "speaker":
        raise ValueError(f"model {card.name!r} is a {card.task} model, not a speaker encoder; "
                         f"speaker encoders: {', '.join(catalogue.names('speaker'))}")
    p = catalogue.locate(card.name) / card.extra["weights"]
    if not p.is_file():
        raise catalogue.ModelFileError(f"model {card.name!r}: {p} is missing; reinstall with "
                                       f"{card.pip_command}")
    return p, card.name, card.name


class SpeakerEncoder(Encoder):
    """GE2E speaker embeddings (Resemblyzer): 256-dim, L2-normalised, non-negative.

    Items are float samples at 16 kHz, ``(samples, sample_rate)`` pairs, or audio paths
    (``wav.scp`` entries, any rate). Cosine similarity of two embeddings is their dot product.

    Args:
        name_or_path: ``"resemblyzer"``, a Resemblyzer ``.pt`` checkpoint, or a dir holding one.
        device: torch device.
        batch_size: partials (1.6 s windows) per LSTM forward pass.
        rate: partials per second (Resemblyzer's default 1.3).
        min_coverage: keep a last, shorter partial if it covers this much (default 0.75).
    """

    kind = "speaker"

    def __init__(self, name_or_path: str | os.PathLike = "resemblyzer", *, device: str = "cpu",
                 batch_size: int = 64, rate: float = 1.3, min_coverage: float = 0.75) -> None:
        from resemblyzer import VoiceEncoder

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        weights, self.name, self.fingerprint = _weights_path(name_or_path)
        self.model = VoiceEncoder(device, verbose=False, weights_fpath=weights)
        # VoiceEncoder loads with strict=False, which would keep random weights for a wrong
        # checkpoint without a word: check the keys ourselves.
        state = torch.load(weights, map_location="cpu", weights_only=True).get("model_state", {})
        missing = set(self.model.state_dict()) - set(state)
        if missing:
            raise catalogue.ModelFileError(f"{weights}: not a Resemblyzer checkpoint (missing "
                                           f"{sorted(missing)[:3]}...)")
        self.model.eval()
        self.dim = self.model.linear.out_features
        self.batch_size, self.rate, self.min_coverage = batch_size, rate, min_coverage

    def content(self, item: AudioItem) -> bytes:
        if isinstance(item, (str, os.PathLike)):
            # Content, not the path, so a moved or copied corpus hits the cache.
            return b"file\0" + Path(item).read_bytes()
        samples, sr = item if isinstance(item, tuple) else (item, SAMPLE_RATE)
        return f"pcm{int(sr)}\0".encode() + np.ascontiguousarray(samples, np.float32).tobytes()

    def _samples(self, item: AudioItem, i: int) -> np.ndarray:
        """16 kHz float32 samples of item ``i``."""
        if isinstance(item, (str, os.PathLike)):
            return read_audio(str(item), utt=f"item {i}", target_sample_rate=SAMPLE_RATE)
        if isinstance(item, tuple):
            if len(item) != 2:
                raise EncoderError(f"item {i}: expected (samples, sample_rate), got a "
                                   f"{len(item)}-tuple")
            samples, sr = item
            samples = np.asarray(samples, np.float32)
            return resample(samples, int(sr), SAMPLE_RATE) if samples.ndim == 1 else samples
        if isinstance(item, np.ndarray):
            return np.asarray(item, np.float32)
        raise EncoderError(f"item {i} is a {type(item).__name__}; expected 16 kHz samples, "
                           "(samples, sample_rate) or an audio path")

    def _partials(self, item: AudioItem, i: int) -> np.ndarray:
        """(P, 160, 40) mel partials of item ``i``, prepared as Resemblyzer's preprocess_wav."""
        from resemblyzer import audio as ra
        from resemblyzer import hparams

        wav = self._samples(item, i)
        if wav.ndim != 1:
            raise EncoderError(f"item {i}: expected mono samples of shape (T,), got {wav.shape}")
        if not np.any(wav):  # volume normalisation would divide by zero
            raise EncoderError(f"item {i}: audio is silent (all zeros)")
        wav = ra.normalize_volume(wav, hparams.audio_norm_target_dBFS, increase_only=True)
        wav = ra.trim_long_silences(wav)
        if wav.size == 0:
            raise EncoderError(f"item {i}: no speech found (the VAD removed everything)")
        wav_slices, mel_slices = self.model.compute_partial_slices(wav.size, self.rate,
                                                                   self.min_coverage)
        if wav_slices[-1].stop >= wav.size:
            wav = np.pad(wav, (0, wav_slices[-1].stop - wav.size))
        mel = ra.wav_to_mel_spectrogram(wav)  # (frames, 40)
        return np.stack([mel[s] for s in mel_slices])

    def embed(self, items: Sequence[AudioItem]) -> np.ndarray:
        """Embed utterances: (N, 256) float32, each L2-normalised."""
        out = empty(self.dim) if not len(items) else np.empty((len(items), self.dim), np.float32)
        pending: list[tuple[int, np.ndarray]] = []  # (item index, its partials)
        for i, item in enumerate(items):
            pending.append((i, self._partials(item, i)))
            # Flush once a batch is full, so memory stays bounded for a whole corpus.
            if sum(len(p) for _, p in pending) >= self.batch_size or i == len(items) - 1:
                self._embed_partials(pending, out)
                pending = []
        return out

    def _embed_partials(self, pending: list[tuple[int, np.ndarray]], out: np.ndarray) -> None:
        mels = torch.from_numpy(np.concatenate([p for _, p in pending]))  # (sum P, 160, 40)
        with torch.inference_mode():
            vecs = torch.cat([self.model(mels[s:s + self.batch_size].to(self.model.device)).cpu()
                              for s in range(0, len(mels), self.batch_size)]).numpy()
        start = 0
        for i, p in pending:
            mean = vecs[start:start + len(p)].mean(axis=0)  # Resemblyzer: mean, then L2
            out[i] = mean / np.linalg.norm(mean)
            start += len(p)
