"""Whisper's encoder as a frozen feature extractor (CTranslate2 ``encode``), unpadded.

The speech-prefix LLM (``speechlm.llm.speech_llm``) projects these states into an LLM's
embedding space. Whisper pads every input to 30 s; CTranslate2's ``encode`` also accepts
shorter log-mel inputs, which keeps a 3 s utterance at 150 states (20 ms each) and costs
about a tenth of a padded window (measured here: 0.08 s vs 0.56 s for tiny.en, 1 thread).
The states then differ from those of a padded window, so a projector must be trained and
used on the same (unpadded) form.

>>> enc = WhisperEncoder("whisper-tiny.en")        # doctest: +SKIP
>>> enc(samples).shape                             # doctest: +SKIP
(151, 384)
"""
from __future__ import annotations

import os

import numpy as np

from speechlm.asr.whisper_asr import WINDOW_S, checked_samples, load_faster_whisper

__all__ = ["WhisperEncoder"]


class WhisperEncoder:
    """Encoder states ``(T, D)`` of 16 kHz mono audio (at most 30 s).

    Args:
        model: a catalogue name (``whisper-tiny.en``, ``whisper-base``) or a CTranslate2 dir.
        threads: CPU threads of CTranslate2.
        compute_type: CTranslate2 compute type (``int8`` on the CPU, as decoding uses).
    """

    sample_rate = 16000

    def __init__(self, model: str | os.PathLike = "whisper-tiny.en", *, device: str = "cpu",
                 threads: int = 1, compute_type: str = "int8") -> None:
        fw = load_faster_whisper(model, device=device, compute_type=compute_type,
                                 threads=threads)
        self.name = str(model)
        self._fe = fw.feature_extractor
        self._model = fw.model
        self.dim = int(self(np.zeros(3200, np.float32)).shape[-1])  # 0.2 s of silence

    @staticmethod
    def _storage(x: np.ndarray):
        import ctranslate2

        return ctranslate2.StorageView.from_array(np.ascontiguousarray(x, dtype=np.float32))

    def __call__(self, samples: np.ndarray, utt: str = "utt") -> np.ndarray:
        """Float32 states ``(ceil(frames / 2), D)``, 20 ms apart."""
        samples = checked_samples(samples, utt, max_s=WINDOW_S, sample_rate=self.sample_rate,
                                  limit=f"Whisper's {WINDOW_S:.0f} s window")
        feats = self._fe(samples)[:, :-1]  # (n_mels, frames); the last frame is padding
        if feats.shape[-1] % 2:
            feats = feats[:, :-1]
        out = self._model.encode(self._storage(feats[None]), to_cpu=True)
        return np.array(out)[0]  # (T, D)
