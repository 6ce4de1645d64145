"""Whisper as a second-pass scorer: the log-probability of given texts under Whisper.

Whisper's own beam search writes a lone spoken digit as "to", "for" or "Bye." often enough
to make it a weak isolated-word recogniser (24.6% WER on an unseen FSDD speaker). Asked
instead which of a few candidate texts the audio holds, teacher-forced, it is a strong
one: each candidate is written the way Whisper writes a short utterance (first letter
upper-case, a full stop; ``written_form``) and scored token by token against the encoded
audio (CTranslate2's ``align``, whose ``text_token_probs`` are the decoder's probabilities
of the forced tokens). The probability of ending after the text is not part of the score:
``align`` reports 0 for special tokens such as end-of-text. The candidates usually come from a first
pass's N-best list, so this is N-best rescoring with a pretrained recogniser.

Window. The audio is padded with silence to ``window_s`` seconds before encoding. Whisper
was trained on 30 s windows; shorter windows cost less and score worse (yweweler FSDD dev,
450 digits, forced choice among the ten digit words, whisper-tiny.en, 2 CPU cores:
unpadded 6.7% error on the first 60 at 0.09 s per utterance, 5 s 8.4% at 0.16 s, 10 s 4.2%
at 0.37-0.48 s).

>>> written_form("six")
' Six.'
>>> scorer = WhisperScorer("whisper-tiny.en")                      # doctest: +SKIP
>>> scorer.score(samples, ["six", "three"])                        # doctest: +SKIP
[-0.41, -7.93]
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from speechlm.asr.whisper_asr import WINDOW_S, checked_samples, load_faster_whisper

__all__ = ["WhisperScorer", "written_form"]

_MIN_PROB = 1e-30  # floor of a token probability (log 0 would poison a sum)


def written_form(text: str) -> str:
    """How Whisper writes a short normalised utterance: ``" Six."`` for ``"six"``."""
    text = text.strip()
    return f" {text[:1].upper()}{text[1:]}." if text else ""


class WhisperScorer:
    """Teacher-forced log-probabilities of candidate texts given the audio.

    Args:
        model: A catalogue name (``whisper-tiny.en``, ``whisper-base``) or a CTranslate2 dir.
        window_s: Seconds the audio is padded to before encoding (at most 30).
        threads: CPU threads of CTranslate2.
        compute_type: CTranslate2 compute type.
        prompt: Text Whisper reads as the previous segment before each candidate
            (``<|startofprev|>``), e.g. the task's vocabulary: it conditions the decoder
            the way Whisper's ``initial_prompt`` does.
    """

    sample_rate = 16000

    def __init__(self, model: str | os.PathLike = "whisper-tiny.en", *, window_s: float = 10.0,
                 threads: int = 1, compute_type: str = "int8", device: str = "cpu",
                 prompt: str | None = None) -> None:
        if not 0 < window_s <= WINDOW_S:
            raise ValueError(f"window_s must be in (0, {WINDOW_S:.0f}], got {window_s}")
        from faster_whisper.tokenizer import Tokenizer

        fw = load_faster_whisper(model, device=device, compute_type=compute_type,
                                 threads=threads)
        self.name = str(model)
        self.window_s = float(window_s)
        self._fe, self._model = fw.feature_extractor, fw.model
        multilingual = fw.model.is_multilingual
        self._tok = Tokenizer(fw.hf_tokenizer, multilingual, task="transcribe",
                              language="en" if multilingual else None)
        self._start = [*self._tok.sot_sequence, self._tok.no_timestamps]
        self.prompt = prompt.strip() if prompt else None
        if self.prompt:  # Whisper keeps at most 223 prompt tokens (half its text context)
            prev = self._tok.encode(" " + self.prompt)[-223:]
            self._start = [self._tok.sot_prev, *prev, *self._start]

    def tokens(self, text: str) -> list[int]:
        """Token ids of ``text`` in its written form."""
        return self._tok.encode(written_form(text))

    def score(self, samples: np.ndarray, texts: Sequence[str], utt: str = "utt") -> list[float]:
        """Natural-log probability of each text (in its written form) given the audio.

        An empty text scores ``-inf``: without the end-of-text probability (module
        docstring) there is nothing to score it by.
        """
        import ctranslate2
        from faster_whisper.audio import pad_or_trim

        samples = checked_samples(samples, utt, max_s=self.window_s, sample_rate=self.sample_rate,
                                  limit=f"the scoring window of {self.window_s:.0f} s (window_s)")
        forced = [self.tokens(t) for t in texts]
        nonempty = [i for i, t in enumerate(forced) if t]
        out = [-math.inf] * len(texts)
        if not nonempty:
            return out
        mel = self._fe(samples)
        num_frames = min(mel.shape[-1] - 1, int(self.window_s * 100))
        mel = pad_or_trim(mel, int(round(self.window_s * 100)))
        enc = np.array(self._model.encode(ctranslate2.StorageView.from_array(
            np.ascontiguousarray(mel[None], dtype=np.float32)), to_cpu=True))
        # one copy of the encoded audio per candidate: align scores a batch of (audio, text)
        batch = ctranslate2.StorageView.from_array(np.ascontiguousarray(
            np.repeat(enc, len(nonempty), axis=0)))
        results = self._model.align(batch, self._start, [forced[i] for i in nonempty],
                                    [num_frames] * len(nonempty))
        for i, r in zip(nonempty, results, strict=True):
            out[i] = float(sum(math.log(max(p, _MIN_PROB)) for p in r.text_token_probs))
        return out
