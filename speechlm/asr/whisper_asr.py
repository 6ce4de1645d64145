"""Whisper through CTranslate2: a real N-best with scores, word times, and a lattice.

``model`` is a catalogue name (``whisper-tiny.en``, ``whisper-base``: see
``speechlm.core.catalogue``) or a user's own CTranslate2 (faster-whisper) directory holding
``model.bin``, ``config.json``, ``tokenizer.json`` and ``vocabulary.txt``. Features come
from faster-whisper's ``FeatureExtractor``; decoding is ``ctranslate2.models.Whisper``'s
beam search with ``num_hypotheses = nbest`` and ``return_scores``; prompts are the
start-of-transcript tokens and ``<|notimestamps|>`` (transcribe, no timestamp tokens).

Scores. With ``return_scores`` CTranslate2 returns the hypothesis log-probability
(natural log, the end-of-text token included) divided by ``len(tokens) **
length_penalty``, ``tokens`` being the generated ids without prompt or end-of-text
(checked here: with ``length_penalty=1`` score times length equals the score returned with
``length_penalty=0``, to 1e-4). The beam search ranks by that normalised score; a
:class:`Hypothesis` carries the *total* log-probability ``score * len ** length_penalty``.
With ``normalize=True`` (the default) texts are passed through
:func:`speechlm.core.normalize.normalize_text`; hypotheses that become the same words
("Seven of clubs." / "7 of clubs") are merged into one whose score is the log of the summed
probabilities. The N-best is sorted by that score, best first.

Long audio. The encoder sees 30 s windows. Audio longer than 30 s is cut into segments of
at most 30 s without VAD: each cut falls at the quietest 50 ms of the last 10 s of the
window, so no audio is dropped and words are rarely split. Segments are decoded
independently (no text carried from one to the next, so they batch); the utterance N-best
is the ``nbest`` best combinations of the segments' N-bests, and its lattice the segment
lattices joined in time order.

Word times come from CTranslate2's cross-attention alignment (``Whisper.align``, as in
faster-whisper's ``word_timestamps``) of the best hypothesis of each segment; with
normalisation a written word ("2024") spreads its time over its spoken words. The lattice
is :func:`speechlm.lattice.nbest_lattice.lattice_from_nbest` of each segment's N-best.

>>> asr = WhisperASR("whisper-tiny.en")               # doctest: +SKIP
>>> hyps, lattice = asr(samples, "utt1")              # doctest: +SKIP
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechlm.core import catalogue
from speechlm.core.hypothesis import Hypothesis
from speechlm.core.normalize import normalize_text
from speechlm.data.audio import resample
from speechlm.lattice.lattice import Lattice
from speechlm.lattice.nbest_lattice import concat_lattices, lattice_from_nbest

__all__ = ["POSTERIOR_AM_SCALE", "WhisperASR", "checked_samples", "load_faster_whisper",
           "resolve_model_dir", "split_points"]

# Scale on hypothesis log-probabilities for posteriors and WCNs. NOT TUNED YET: a first
# guess (Whisper's sequence log-probabilities are sharp; scaling them down spreads the mass
# over the beam's alternatives); `tools/bench/asr_models.py --tune` sweeps it on FSDD dev.
POSTERIOR_AM_SCALE = 0.5
WINDOW_S = 30.0  # Whisper's encoder window
_CTRANSLATE2_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")


def resolve_model_dir(model: str | os.PathLike, files: Sequence[str] = _CTRANSLATE2_FILES
                      ) -> Path:
    """A catalogue name or a local directory -> the model directory, its files checked.

    Raises:
        UnknownModel: neither a catalogue name nor an existing directory (lists the
            known ASR names).
        ModelNotInstalled: the catalogue model's package is missing (names the pip command).
        ModelFileError: a required file is missing or empty (names the file).
    """
    if catalogue.is_local_dir(model):
        path = Path(model)
        if not path.is_dir():
            raise catalogue.ModelFileError(f"model {str(model)!r} is a file; give the "
                                           f"model's directory")
    elif str(model) in catalogue.MODELS:
        path = catalogue.locate(str(model))
    else:
        raise catalogue.UnknownModel(
            f"{str(model)!r} is neither a catalogue model ({', '.join(catalogue.names('asr'))})"
            f" nor an existing directory")
    for f in files:
        p = path / f
        if not p.is_file() or p.stat().st_size == 0:
            raise catalogue.ModelFileError(f"model {str(model)!r}: {p} is missing or empty")
    return path


def checked_samples(samples, utt: str, *, max_s: float | None = None, sample_rate: int = 16000,
                    limit: str = "") -> np.ndarray:
    """``samples`` as float32 mono, or a ValueError naming the utterance.

    Args:
        max_s: Longest accepted length in seconds (None: any); ``limit`` names that limit
            in the message.
    """
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"utterance {utt!r}: expected non-empty mono samples, got shape "
                         f"{x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"utterance {utt!r}: samples are not all finite")
    if max_s is not None and len(x) > max_s * sample_rate:
        raise ValueError(f"utterance {utt!r}: {len(x) / sample_rate:.1f} s is over {limit}")
    return x


def load_faster_whisper(model: str | os.PathLike, *, device: str = "cpu",
                        compute_type: str = "int8", threads: int = 1):
    """A ``faster_whisper.WhisperModel`` from a catalogue name or a CTranslate2 directory.

    Raises:
        ModelFileError: CTranslate2 cannot load the weights (names the file), besides the
            errors of :func:`resolve_model_dir`.
    """
    from faster_whisper import WhisperModel

    path = resolve_model_dir(model)
    try:
        return WhisperModel(str(path), device=device, compute_type=compute_type,
                            cpu_threads=threads)
    except (RuntimeError, ValueError) as e:
        raise catalogue.ModelFileError(f"model {str(model)!r}: cannot load {path}/model.bin"
                                       f" with CTranslate2: {e}") from None


def split_points(samples: np.ndarray, sample_rate: int, window_s: float = WINDOW_S,
                 search_s: float = 10.0) -> list[tuple[int, int]]:
    """Cut a signal into segments of at most ``window_s`` seconds, at quiet points.

    Each cut is the centre of the quietest 50 ms (mean square of 10 ms blocks, smoothed
    over 5 blocks) in the last ``search_s`` seconds of the window.

    Args:
        samples: (T,) signal.
        sample_rate: Its rate in Hz.

    Returns:
        ``(start, end)`` sample indices covering ``[0, T)`` without gaps.
    """
    n, win = len(samples), int(window_s * sample_rate)
    block = sample_rate // 100
    out, pos = [], 0
    while n - pos > win:
        lo = pos + win - int(search_s * sample_rate)
        region = samples[lo:pos + win]
        energy = (region[: len(region) // block * block].reshape(-1, block) ** 2).mean(1)
        smooth = np.convolve(energy, np.ones(5) / 5, mode="same")
        cut = lo + int(np.argmin(smooth)) * block + block // 2
        out.append((pos, cut))
        pos = cut
    out.append((pos, n))
    return out


@dataclass
class _Segment:
    utt_index: int
    start: int  # samples
    end: int
    features: np.ndarray  # (n_mels, 3000)
    num_frames: int  # frames of real audio in the window


def _logsumexp(xs: Sequence[float]) -> float:
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


class WhisperASR:
    """Whisper decoding to an N-best list and an N-best lattice (see the module docstring).

    Args:
        model: Catalogue name or CTranslate2 directory.
        nbest: Hypotheses returned per segment (at most ``beam_size``).
        beam_size: Beam of the search.
        language: Language code for a multilingual model (None: detected per segment);
            an English-only model takes only None or ``"en"``.
        device: ``cpu`` or ``cuda``.
        compute_type: CTranslate2 compute type (``int8``, ``float32``, ``float16``...).
        threads: CPU threads of one decode (CTranslate2 ``intra_threads``).
        word_timestamps: Align the best hypothesis for word times (else times are spread
            evenly over each segment).
        normalize: Pass texts through ``normalize_text`` (and merge what becomes equal).
        length_penalty: Beam ranking by ``logprob / len ** length_penalty``.
        posterior_am_scale: Scale for posteriors from the lattice (``POSTERIOR_AM_SCALE``).
        max_new_tokens: Cap on generated tokens per segment (None: up to Whisper's 448).
    """

    sample_rate = 16000

    def __init__(self, model: str | os.PathLike = "whisper-tiny.en", *, nbest: int = 5,
                 beam_size: int = 5, language: str | None = None, device: str = "cpu",
                 compute_type: str = "int8", threads: int = 1, word_timestamps: bool = True,
                 normalize: bool = True, length_penalty: float = 1.0,
                 posterior_am_scale: float = POSTERIOR_AM_SCALE,
                 max_new_tokens: int | None = None) -> None:
        if not 1 <= nbest <= beam_size:
            raise ValueError(f"nbest must be in 1..beam_size={beam_size}, got {nbest}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if posterior_am_scale <= 0:
            raise ValueError(f"posterior_am_scale must be > 0, got {posterior_am_scale}")
        path = resolve_model_dir(model)
        self._fw = load_faster_whisper(model, device=device, compute_type=compute_type,
                                       threads=threads)
        self.model = self._fw.model  # ctranslate2.models.Whisper
        if language not in (None, "en") and not self.model.is_multilingual:
            raise ValueError(f"model {str(model)!r} is English-only; language={language!r}")
        self.name = str(model) if str(model) in catalogue.MODELS else path.name
        self.path = path
        self.nbest, self.beam_size = nbest, beam_size
        self.language = language
        self.word_timestamps = word_timestamps
        self.normalize = normalize
        self.length_penalty = length_penalty
        self.posterior_am_scale = float(posterior_am_scale)
        self.max_length = 448 if max_new_tokens is None else min(448, 4 + max_new_tokens)
        self._tokenizers: dict[str | None, object] = {}

    # ------------------------------------------------------------------ pieces
    def _tokenizer(self, language: str | None):
        from faster_whisper.tokenizer import Tokenizer

        multilingual = self.model.is_multilingual
        key = language if multilingual else None
        if key not in self._tokenizers:
            self._tokenizers[key] = Tokenizer(self._fw.hf_tokenizer, multilingual,
                                              task="transcribe",
                                              language=(key or "en") if multilingual else None)
        return self._tokenizers[key]

    def _segments(self, batch: Sequence[np.ndarray], utts: Sequence[str]) -> list[_Segment]:
        from faster_whisper.audio import pad_or_trim

        fe = self._fw.feature_extractor
        segs = []
        for i, (x, utt) in enumerate(zip(batch, utts, strict=True)):
            x = checked_samples(x, utt)
            for start, end in split_points(x, self.sample_rate):
                feats = fe(x[start:end])  # (n_mels, frames), padded by 160 samples
                segs.append(_Segment(i, start, end, pad_or_trim(feats),
                                     min(feats.shape[-1] - 1, fe.nb_max_frames)))
        return segs

    def _languages(self, encoder_output, n: int) -> list[str | None]:
        if not self.model.is_multilingual:
            return [None] * n
        if self.language is not None:
            return [self.language] * n
        found = self.model.detect_language(encoder_output)  # [[("<|en|>", p), ...], ...]
        return [r[0][0][2:-2] for r in found]

    def _word_times(self, tokenizer, tokens: list[int], encoder_output, num_frames: int
                    ) -> list[tuple[str, float, float]]:
        """(written word, start, end) of ``tokens`` in one window, seconds from its start."""
        if not tokens:
            return []
        aligned = self._fw.find_alignment(tokenizer, [tokens], encoder_output, num_frames)[0]
        # find_alignment splits off punctuation; a written word is what lies between spaces
        words: list[list] = []
        for w in aligned:
            if not words or w["word"].startswith(" "):
                words.append([w["word"], float(w["start"]), float(w["end"])])
            else:
                words[-1][0] += w["word"]
                words[-1][2] = float(w["end"])
        return [(w.strip(), s, e) for w, s, e in words]

    def _spoken_times(self, written: list[tuple[str, float, float]], text: str, offset: float
                      ) -> list[tuple[float, float]] | None:
        """Times of the words of ``text`` (normalised or not) from the written words' times;
        None if they do not line up (then the lattice spreads the times evenly)."""
        words, times = [], []
        for w, s, e in written:
            spoken = normalize_text(w).split() if self.normalize else [w]
            step = (e - s) / max(len(spoken), 1)
            for k, x in enumerate(spoken):
                words.append(x)
                times.append((offset + s + k * step, offset + s + (k + 1) * step))
        return times if words == text.split() else None

    def _segment_nbest(self, tokenizer, result) -> list[tuple[Hypothesis, list[int]]]:
        """One window's hypotheses (merged by text, best first) with the token ids of the
        best member of each."""
        groups: dict[str, list[tuple[float, list[int]]]] = {}
        for ids, score in zip(result.sequences_ids, result.scores, strict=True):
            total = float(score) * max(len(ids), 1) ** self.length_penalty
            raw = tokenizer.decode(ids).strip()
            text = normalize_text(raw) if self.normalize else " ".join(raw.split())
            groups.setdefault(text, []).append((total, list(ids)))
        out = []
        for text, members in groups.items():
            members.sort(key=lambda m: -m[0])
            best_total, ids = members[0]
            score = _logsumexp([m[0] for m in members])
            pieces = tuple(tokenizer.decode([t]) for t in ids)
            out.append((Hypothesis(text, score, tokens=pieces,
                                   scores=(("logprob", score),
                                           ("avg_logprob", best_total / (len(ids) + 1)))),
                        ids))
        out.sort(key=lambda h: -h[0].score)
        return out

    @staticmethod
    def _combine(per_segment: list[list[Hypothesis]], n: int) -> list[Hypothesis]:
        """The ``n`` best concatenations of one hypothesis per segment (exact: the top-n
        sums over a list only need the top-n of the lists before it)."""
        best = [(0.0, "", ())]
        for hyps in per_segment:
            best = sorted(((s + h.score, f"{t} {h.text}".strip(), toks + h.tokens)
                           for s, t, toks in best for h in hyps), key=lambda x: -x[0])[:n]
        merged: dict[str, list] = {}
        for s, t, toks in best:
            merged.setdefault(t, []).append((s, toks))
        out = [Hypothesis(t, _logsumexp([s for s, _ in m]), tokens=m[0][1],
                          scores=(("logprob", _logsumexp([s for s, _ in m])),))
               for t, m in merged.items()]
        return sorted(out, key=lambda h: -h.score)

    # ------------------------------------------------------------------ decoding
    def decode_batch(self, batch: Sequence[np.ndarray], utts: Sequence[str], *,
                     sample_rate: int | None = None
                     ) -> list[tuple[list[Hypothesis], Lattice | None]]:
        """Decode utterances together: every 30 s window of the batch goes through one
        padded ``encode`` and one ``generate`` call.

        Args:
            batch: (T_i,) float32 signals in [-1, 1].
            utts: Their ids (error messages, lattices).
            sample_rate: Their rate (None: 16 kHz); others are resampled.

        Returns:
            Per utterance ``(hypotheses best first, lattice)``.
        """
        import ctranslate2

        if len(batch) != len(utts):
            raise ValueError(f"{len(batch)} signals but {len(utts)} utterance ids")
        if not len(batch):
            return []
        sigs = [np.asarray(x, dtype=np.float32) for x in batch]
        if sample_rate is not None and sample_rate != self.sample_rate:
            sigs = [resample(x, sample_rate, self.sample_rate) for x in sigs]
        segs = self._segments(sigs, utts)
        feats = np.ascontiguousarray(np.stack([s.features for s in segs]))  # (S, n_mels, 3000)
        enc = self.model.encode(ctranslate2.StorageView.from_array(feats))  # (S, 1500, D)
        langs = self._languages(enc, len(segs))
        toks = [self._tokenizer(lang) for lang in langs]
        prompts = [[*t.sot_sequence, t.no_timestamps] for t in toks]
        results = self.model.generate(
            enc, prompts, beam_size=self.beam_size, num_hypotheses=self.nbest,
            length_penalty=self.length_penalty, return_scores=True,
            max_length=self.max_length, suppress_blank=True, suppress_tokens=[-1])
        seg_hyps = [self._segment_nbest(t, r) for t, r in zip(toks, results, strict=True)]
        seg_times: list[list[tuple[float, float]] | None] = [None] * len(segs)
        if self.word_timestamps:
            enc_np = np.asarray(enc)  # align one window at a time: each has its own tokens
            for k, (seg, t, hyps) in enumerate(zip(segs, toks, seg_hyps, strict=True)):
                best, ids = hyps[0]
                if not best.text:
                    continue
                one = ctranslate2.StorageView.from_array(np.ascontiguousarray(enc_np[k:k + 1]))
                written = self._word_times(t, ids, one, seg.num_frames)
                seg_times[k] = self._spoken_times(written, best.text,
                                                  seg.start / self.sample_rate)
        out = []
        for i, utt in enumerate(utts):
            mine = [k for k, s in enumerate(segs) if s.utt_index == i]
            lats = [lattice_from_nbest([h for h, _ in seg_hyps[k]], utt=utt,
                                       word_times=seg_times[k],
                                       start_time=segs[k].start / self.sample_rate,
                                       duration=segs[k].end / self.sample_rate)
                    for k in mine]
            if len(mine) == 1:
                hyps = [h for h, _ in seg_hyps[mine[0]]]
            else:
                hyps = self._combine([[h for h, _ in seg_hyps[k]] for k in mine], self.nbest)
            out.append((hyps, concat_lattices(lats, utt=utt)))
        return out

    def __call__(self, samples: np.ndarray, utt: str = "utt", *,
                 sample_rate: int | None = None) -> tuple[list[Hypothesis], Lattice | None]:
        """Decode one utterance: ``(hypotheses best first, lattice)``."""
        return self.decode_batch([samples], [utt], sample_rate=sample_rate)[0]

    def word_times(self, lattice: Lattice) -> list[tuple[str, float, float]]:
        """``(word, start, end)`` of the lattice's best path (the 1-best), for a CTM."""
        path = lattice.best_path()
        return list(zip(path.words, path.starts, path.ends, strict=True))
