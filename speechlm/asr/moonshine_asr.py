"""Moonshine (tiny-en) through the ``moonshine-voice`` library: 1-best only.

``model`` is the catalogue name ``moonshine-tiny-en`` (the weights ``moonshine-voice==0.0.73``
ships) or a user's own directory with ``encoder_model.ort``, ``decoder_model_merged.ort`` and
``tokenizer.bin``. The library's non-streaming ``Transcriber.transcribe_without_streaming``
cuts the audio into lines with its own VAD (so long audio is handled, and non-speech
between lines is skipped) and returns each line's text, start and duration. It exposes no
N-best, no scores and, for tiny-en, no word times (its word-timestamp model is not shipped),
so a hypothesis has score 0, and its lattice is a single path (posterior 1 everywhere)
whose words are spread evenly over the time of their line: enough for ``--lattice`` output,
CTM and the WCN/oracle code to run on this backend, with nothing to choose between.
There is no batch API either: :meth:`MoonshineASR.decode_batch` decodes one at a time.
The library picks its own ONNX Runtime threads (it offers no option for them).

>>> asr = MoonshineASR("moonshine-tiny-en")            # doctest: +SKIP
>>> hyps, lattice = asr(samples, "utt1")               # doctest: +SKIP
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from speechlm.asr.whisper_asr import checked_samples, resolve_model_dir
from speechlm.core.hypothesis import Hypothesis
from speechlm.core.normalize import normalize_text
from speechlm.data.audio import resample
from speechlm.lattice.lattice import Lattice
from speechlm.lattice.nbest_lattice import lattice_from_nbest

__all__ = ["MoonshineASR"]

_FILES = ("encoder_model.ort", "decoder_model_merged.ort", "tokenizer.bin")


class MoonshineASR:
    """Moonshine decoding to a 1-best hypothesis and its one-path lattice.

    Args:
        model: Catalogue name or directory (see the module docstring).
        model_arch: The library's architecture name (``tiny``, ``base``...); it must match
            the weights.
        normalize: Pass the text through ``normalize_text``.
        posterior_am_scale: Kept for the common backend interface; with one path it does
            not change any posterior.
    """

    sample_rate = 16000

    def __init__(self, model: str | os.PathLike = "moonshine-tiny-en", *,
                 model_arch: str = "tiny", normalize: bool = True,
                 posterior_am_scale: float = 1.0) -> None:
        from moonshine_voice import ModelArch, MoonshineError
        from moonshine_voice.transcriber import Transcriber

        try:
            arch = ModelArch[model_arch.upper()]
        except KeyError:
            raise ValueError(f"unknown moonshine model_arch {model_arch!r}; known: "
                             f"{', '.join(a.name.lower() for a in ModelArch)}") from None
        path = resolve_model_dir(model, _FILES)
        try:
            self._transcriber = Transcriber(str(path), model_arch=arch)
        except MoonshineError as e:
            from speechlm.core.catalogue import ModelFileError

            raise ModelFileError(f"model {str(model)!r}: moonshine cannot load {path}: {e}"
                                 ) from None
        self.name = str(model) if str(model) == "moonshine-tiny-en" else path.name
        self.path = path
        self.normalize = normalize
        self.posterior_am_scale = float(posterior_am_scale)

    def __call__(self, samples: np.ndarray, utt: str = "utt", *,
                 sample_rate: int | None = None) -> tuple[list[Hypothesis], Lattice | None]:
        """Decode one utterance: ``([the 1-best], its one-path lattice)``."""
        x = checked_samples(samples, utt)
        if sample_rate is not None and sample_rate != self.sample_rate:
            x = resample(x, sample_rate, self.sample_rate)
        transcript = self._transcriber.transcribe_without_streaming(x.tolist(),
                                                                    self.sample_rate)
        words: list[str] = []
        times: list[tuple[float, float]] = []
        for line in transcript.lines:
            text = normalize_text(line.text) if self.normalize else line.text
            mine = text.split()
            step = float(line.duration) / max(len(mine), 1)
            t0 = float(line.start_time)
            words += mine
            times += [(t0 + k * step, t0 + (k + 1) * step) for k in range(len(mine))]
        hyp = Hypothesis(" ".join(words), 0.0, tokens=tuple(words))
        lattice = lattice_from_nbest([hyp], utt=utt, word_times=times,
                                     duration=len(x) / self.sample_rate)
        return [hyp], lattice

    def decode_batch(self, batch: Sequence[np.ndarray], utts: Sequence[str], *,
                     sample_rate: int | None = None
                     ) -> list[tuple[list[Hypothesis], Lattice | None]]:
        """Decode utterances one by one (the library has no batch call)."""
        if len(batch) != len(utts):
            raise ValueError(f"{len(batch)} signals but {len(utts)} utterance ids")
        return [self(x, u, sample_rate=sample_rate) for x, u in zip(batch, utts, strict=True)]

    def close(self) -> None:
        """Free the library's transcriber now rather than at garbage collection."""
        self._transcriber.close()
