"""The Python API: transcribe audio to text, N-best, lattice, WCN and CTM; load the LLM.

Three calls cover the toolkit::

    import speechlm

    asr = speechlm.load_asr("pocketsphinx")               # or a recipe model dir (+ graph)
    r = asr("cards/001.wav")                              # or asr(samples, sample_rate=16000)
    r.text, r.nbest, r.lattice, r.wcn, r.ctm
    llm = speechlm.load_llm("exp/lm")                     # the runtime's LLM
    llm.score([h.text for h in r.nbest])                  # natural-log probabilities

Runnable with the shared example audio (skipped when ``../shared/data`` is absent):

>>> from speechlm.testing.shared_data import shared_data_dir
>>> cards = shared_data_dir("english_speech_samples/pocketsphinx_cards")
>>> asr = load_asr("pocketsphinx", nbest=3)                       # doctest: +SKIP
>>> r = asr(cards / "001.wav")                                    # doctest: +SKIP
>>> r.text                                                        # doctest: +SKIP
'ten of clubs'
>>> r.ctm[0]                                                      # doctest: +SKIP
'001 1 0.150 0.190 ten 0.9893'

Results follow the forms ``speechlm decode`` writes (``Transcript.to_json``): the N-best
list is an ``nbest.jsonl`` line, the WCN a ``cn.jsonl`` line, the CTM its ``ctm`` lines.
Everything heavy (torch, ESPnet, PocketSphinx, transformers) is imported on first use.
"""
from __future__ import annotations

import io
import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from speechlm.core.hypothesis import Hypothesis

if TYPE_CHECKING:
    from speechlm.lattice import ConfusionNetwork, Lattice
    from speechlm.runtime import LLM

__all__ = ["ASR", "AudioLimits", "AudioRejected", "Rescored", "Transcript", "load_asr",
           "load_llm", "read_audio_input", "rescore_nbest", "slu"]

POCKETSPHINX = "pocketsphinx"


# ---- audio input -----------------------------------------------------------------------
class AudioRejected(ValueError):
    """Audio that cannot be transcribed, with a message for the person who sent it.

    Attributes:
        code: short machine-readable reason (``"not_audio"``, ``"too_long"``, ``"silent"``,
            ``"sample_rate"``, ``"channels"``, ``"too_short"``, ``"too_large"``).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class AudioLimits:
    """What audio is accepted (the HTTP server passes its own, stricter ones).

    Args:
        max_seconds: longest accepted audio.
        min_seconds: shortest (below one 25 ms feature frame nothing can be decoded).
        min_sample_rate, max_sample_rate: accepted input rates in Hz; audio is resampled
            to the model's rate.
        max_channels: more channels are refused.
        mix_channels: average several channels to mono; False refuses them.
        silence_dbfs: audio whose peak is below this (dB full scale) is refused as silent.
        max_bytes: largest encoded input (bytes or file).
    """

    max_seconds: float = 600.0
    min_seconds: float = 0.1
    min_sample_rate: int = 8000
    max_sample_rate: int = 48000
    max_channels: int = 2
    mix_channels: bool = True
    silence_dbfs: float = -60.0
    max_bytes: int = 200 << 20

    def __post_init__(self) -> None:
        if not 0 < self.min_seconds <= self.max_seconds:
            raise ValueError(f"need 0 < min_seconds <= max_seconds, got {self.min_seconds}, "
                             f"{self.max_seconds}")
        if not 0 < self.min_sample_rate <= self.max_sample_rate:
            raise ValueError("need 0 < min_sample_rate <= max_sample_rate")
        if self.max_channels < 1 or self.max_bytes < 1:
            raise ValueError("max_channels and max_bytes must be >= 1")


def read_audio_input(audio: Any, sample_rate: int | None = None,
                     limits: AudioLimits = AudioLimits()) -> tuple[np.ndarray, int, int]:
    """Turn a file path, encoded bytes or a sample array into checked mono float32 samples.

    Args:
        audio: a path (``str``/``Path``, read as a file, never run as a command), the bytes
            of an audio file (WAV, FLAC, OGG, MP3: what libsndfile reads), or an array of
            samples, (T,) or (T, C), float in [-1, 1] or int16.
        sample_rate: Hz; required with an array, ignored otherwise.
        limits: what is accepted.

    Returns:
        ``(samples (T,) float32, sample_rate, channels)`` at the input's own rate.

    Raises:
        AudioRejected: unreadable, empty, too short/long, silent, unsupported rate or
            channel count; the message says which and by how much.
    """
    import soundfile as sf

    if isinstance(audio, (str, os.PathLike)):
        path = Path(audio)
        if not path.is_file():
            raise AudioRejected("not_audio", f"{path}: no such file")
        if path.stat().st_size > limits.max_bytes:
            raise AudioRejected("too_large", f"{path}: over {limits.max_bytes} bytes")
        audio = path.read_bytes()
    if isinstance(audio, (bytes, bytearray, memoryview)):
        if len(audio) == 0:
            raise AudioRejected("not_audio", "the audio is empty (0 bytes)")
        if len(audio) > limits.max_bytes:
            raise AudioRejected("too_large", f"the audio is {len(audio)} bytes, over the "
                                f"limit of {limits.max_bytes}")
        try:
            with sf.SoundFile(io.BytesIO(bytes(audio))) as f:
                rate, frames = int(f.samplerate), int(f.frames)
                _check_rate_length(rate, frames, limits)  # before decoding it all
                data = f.read(dtype="float32", always_2d=True)
        except AudioRejected:
            raise
        except Exception as e:  # libsndfile's errors name no common type
            raise AudioRejected("not_audio", "not a readable audio file (WAV, FLAC, OGG or "
                                f"MP3 expected): {_first_line(e)}") from None
    else:
        if sample_rate is None:
            raise ValueError("sample_rate is required with an array of samples")
        data = np.asarray(audio)
        if data.dtype == np.int16:
            data = data.astype(np.float32) / 32768.0
        if data.ndim == 1:
            data = data[:, None]
        if data.ndim != 2 or not np.issubdtype(data.dtype, np.floating):
            raise AudioRejected("not_audio", f"samples must be (T,) or (T, C) float or int16, "
                                f"got shape {data.shape} {data.dtype}")
        rate = int(sample_rate)
        if data.shape[0] < data.shape[1]:  # (C, T) as torchaudio gives: make it (T, C)
            data = data.T
        data = data.astype(np.float32, copy=False)
        _check_rate_length(rate, data.shape[0], limits)
    channels = data.shape[1]
    if channels > limits.max_channels or (channels > 1 and not limits.mix_channels):
        raise AudioRejected("channels", f"the audio has {channels} channels; send mono"
                            + (" (or set mix_channels=true)" if channels <= limits.max_channels
                               else ""))
    if not np.isfinite(data).all():
        raise AudioRejected("not_audio", "the audio contains NaN or infinite samples")
    samples = data[:, 0] if channels == 1 else data.mean(axis=1)
    peak = float(np.abs(samples).max())
    if peak <= 10 ** (limits.silence_dbfs / 20):
        level = "digital silence" if peak == 0 else f"peak {20 * math.log10(peak):.1f} dBFS"
        raise AudioRejected("silent", f"the audio is silent ({level}, threshold "
                            f"{limits.silence_dbfs:g} dBFS)")
    return np.ascontiguousarray(samples, dtype=np.float32), rate, channels


def _check_rate_length(rate: int, frames: int, limits: AudioLimits) -> None:
    if not limits.min_sample_rate <= rate <= limits.max_sample_rate:
        raise AudioRejected("sample_rate", f"sample rate {rate} Hz is not supported (accepted: "
                            f"{limits.min_sample_rate}-{limits.max_sample_rate} Hz)")
    seconds = frames / rate
    if seconds > limits.max_seconds:
        raise AudioRejected("too_long", f"the audio is {seconds:.1f} s long, over the limit of "
                            f"{limits.max_seconds:g} s")
    if seconds < limits.min_seconds:
        raise AudioRejected("too_short", f"the audio is {seconds:.3f} s long, under the "
                            f"minimum of {limits.min_seconds:g} s")


def _first_line(e: BaseException) -> str:
    line = (str(e).strip().splitlines() or [type(e).__name__])[0]
    # libsndfile names the object it read ("Error opening <_io.BytesIO ...>: "): drop it
    return re.sub(r"^Error opening <[^>]*>: ", "", line)[:200]


# ---- results ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Transcript:
    """What one call of an :class:`ASR` gives.

    Args:
        text: the 1-best (the first of ``nbest``; ``""`` when nothing was recognised).
        nbest: hypotheses best first (``core.Hypothesis``: text, score, score parts).
        lattice: the word lattice (``speechlm.lattice.Lattice``), None for beam search.
        wcn: the word confusion network built from the lattice, None without one.
        utt: utterance id used in the JSON forms and CTM.
        duration: seconds of audio.
        sample_rate: the input's rate in Hz (before resampling to the model's).
        channels: channels of the input (averaged to mono).
        decode_s: wall-clock seconds of decoding (lattice and WCN included).
        model: name of the ASR model.

    >>> from speechlm.lattice import ConfusionNetwork
    >>> cn = ConfusionNetwork([[("ten", 0.8, 0.1, 0.4), ("<eps>", 0.2, 0.4, 0.4)]], utt="u1")
    >>> t = Transcript("ten", (Hypothesis("ten", -1.0),), None, cn, utt="u1", duration=0.5)
    >>> t.ctm
    ['u1 1 0.100 0.300 ten 0.8000']
    >>> t.to_json()["wcn"]["bins"][0][0]["word"]
    'ten'
    """

    text: str
    nbest: tuple[Hypothesis, ...]
    lattice: Lattice | None = None
    wcn: ConfusionNetwork | None = None
    utt: str = "utt"
    duration: float = 0.0
    sample_rate: int = 0
    channels: int = 1
    decode_s: float = 0.0
    model: str = ""

    @property
    def ctm(self) -> list[str]:
        """CTM lines ``utt 1 start dur word confidence`` of the WCN's MBR words ([] without)."""
        return self.wcn.ctm_lines() if self.wcn is not None else []

    def word_confidences(self) -> list[tuple[str, float | None]]:
        """``(word, posterior)`` of each word of ``text``: its WCN bin posterior where the
        WCN's MBR words spell the same text, else None (beam search has no posteriors)."""
        words = self.text.split()
        if self.wcn is not None:
            best = self.wcn.best_entries()
            if [e.word for e in best] == words:
                return [(e.word, e.posterior) for e in best]
        return [(w, None) for w in words]

    def to_json(self, *, nbest: bool = True, wcn: bool = True, lattice: bool = False) -> dict:
        """The JSON form: ``nbest`` is an ``nbest.jsonl`` line, ``wcn`` a ``cn.jsonl`` line,
        ``ctm`` the CTM lines, ``lattice`` ``Lattice.to_json()`` (all as ``speechlm decode``
        writes them); ``wcn``/``lattice`` are null where the model gives none."""
        out: dict[str, Any] = {
            "utt": self.utt, "text": self.text, "model": self.model,
            "duration": round(self.duration, 4), "sample_rate": self.sample_rate,
            "channels": self.channels, "decode_seconds": round(self.decode_s, 4)}
        if nbest:
            out["nbest"] = {"utt": self.utt, "hyps": [h.to_json() for h in self.nbest]}
        if wcn:
            out["wcn"] = (None if self.wcn is None
                          else {"utt": self.utt, "bins": self.wcn.to_json()["bins"]})
            out["ctm"] = self.ctm
        if lattice:
            out["lattice"] = None if self.lattice is None else self.lattice.to_json()
        return out


# ---- ASR -------------------------------------------------------------------------------
class ASR:
    """A loaded ASR model; call it on audio to get a :class:`Transcript`.

    Made by :func:`load_asr`. Calls are serialized by a lock (the decoders keep
    per-utterance state), so one ``ASR`` can be shared by threads.

    Attributes:
        name: ``"pocketsphinx"`` or the model dir's experiment tag.
        sample_rate: the model's rate; input at another rate is resampled.
        has_lattice: whether results carry a lattice and WCN.
    """

    def __init__(self, name: str, sample_rate: int, decode, *, am_scale: float,
                 has_lattice: bool, info: dict) -> None:
        self.name = name
        self.sample_rate = sample_rate
        self.has_lattice = has_lattice
        self.am_scale = am_scale
        self.info = info
        self._decode = decode
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ASR({self.name!r}, sample_rate={self.sample_rate}, lattice={self.has_lattice})"

    def __call__(self, audio: Any, sample_rate: int | None = None, *, utt: str = "utt",
                 wcn: bool = True, limits: AudioLimits = AudioLimits()) -> Transcript:
        """Transcribe one utterance.

        Args:
            audio: a file path, the bytes of an audio file, or samples (then give
                ``sample_rate``); see :func:`read_audio_input`.
            sample_rate: Hz of an array input.
            utt: utterance id for the JSON forms and the CTM.
            wcn: build the confusion network (skip it to save time when unused).
            limits: accepted audio.

        Raises:
            AudioRejected: audio that cannot be transcribed (message says why).
        """
        from speechlm.data.audio import resample

        samples, rate, channels = read_audio_input(audio, sample_rate, limits)
        model_samples = resample(samples, rate, self.sample_rate)
        start = time.perf_counter()
        with self._lock:
            hyps, lattice = self._decode(model_samples, utt)
        cn = None
        if lattice is not None and wcn:
            from speechlm.lattice import ConfusionNetwork

            cn = ConfusionNetwork.from_lattice(lattice, am_scale=self.am_scale)
            cn.utt = utt
        return Transcript(text=hyps[0].text if hyps else "", nbest=tuple(hyps),
                          lattice=lattice, wcn=cn, utt=utt, duration=len(samples) / rate,
                          sample_rate=rate, channels=channels,
                          decode_s=time.perf_counter() - start, model=self.name)


def load_asr(model: str | os.PathLike = POCKETSPHINX, graph: str | os.PathLike | None = None,
             *, nbest: int = 5, device: str = "cpu", **options: Any) -> ASR:
    """Load an ASR model once; the returned :class:`ASR` transcribes audio.

    Args:
        model: ``"pocketsphinx"`` (general US English from the pip wheel, with lattices),
            or a recipe model dir (``egs/<corpus>/asr1/exp/<tag>/model``).
        graph: for a model dir, its decoding graph dir (``speechlm make-graph``,
            ``exp/<tag>/graph``): decode through a CTC lattice whose N-best is rescored by
            the attention decoder, giving lattice, WCN and CTM. Without it: joint
            CTC/attention beam search (N-best only).
        nbest: hypotheses kept per utterance.
        device: torch device of a model dir's network.
        **options: backend options: for PocketSphinx those of
            ``speechlm.asr.pocketsphinx_asr.PocketSphinxASR`` (``lm``, ``dictionary``,
            ``jsgf``, ``lw``...); for a model dir ``beam_size``, ``ctc_weight``,
            ``penalty`` and, with a graph, ``LatticeDecodeConfig`` fields (``beam``,
            ``lattice_beam``, ``lm_scale``, ``lm_weight``).

    Raises:
        FileNotFoundError / ValueError: a missing or broken model dir or graph.

    >>> asr = load_asr("pocketsphinx", nbest=3)                     # doctest: +SKIP
    >>> asr                                                         # doctest: +SKIP
    ASR('pocketsphinx', sample_rate=16000, lattice=True)
    """
    if nbest < 1:
        raise ValueError(f"nbest must be >= 1, got {nbest}")
    if str(model) == POCKETSPHINX:
        if graph is not None:
            raise ValueError("graph is for a model dir; PocketSphinx takes lm/jsgf options")
        from speechlm.asr.pocketsphinx_asr import PocketSphinxASR

        ps = PocketSphinxASR(nbest=nbest, **options)
        am_scale = ps.posterior_am_scale

        def decode_ps(samples, utt):
            # PocketSphinx's live CMN carries its cepstral mean from one utterance into the
            # next, so a result would depend on what was decoded before (another user's
            # request, in a server): every utterance starts from the configured mean.
            ps.decoder.reinit_feat()
            hyps, lattice = ps(samples, ps.sample_rate, utt=utt)
            return _consistent_first_score(hyps, lattice, am_scale), lattice

        return ASR(POCKETSPHINX, ps.sample_rate, decode_ps, am_scale=am_scale,
                   has_lattice=True, info={"backend": "pocketsphinx", "lw": ps.lw})
    return _load_espnet(Path(model), graph, nbest=nbest, device=device, **options)


def _load_espnet(model_dir: Path, graph, *, nbest: int, device: str, **options) -> ASR:
    from speechlm.asr.espnet_asr import EspnetASR

    search = {k: options.pop(k) for k in ("beam_size", "ctc_weight", "penalty")
              if k in options}
    name = model_dir.resolve().parent.name if model_dir.name == "model" else model_dir.name
    if graph is None:
        if options:
            raise ValueError(f"unknown option(s) {', '.join(sorted(options))} for beam "
                             "search (lattice options need a graph)")
        beam = int(search.get("beam_size") or 10)
        asr = EspnetASR(model_dir, nbest=min(nbest, beam), device=device, **search)

        def decode_beam(samples, utt):
            feats = asr.features(samples)
            return (asr.decode_features(feats) if len(feats) else []), None

        return ASR(name, asr.sample_rate, decode_beam, am_scale=1.0, has_lattice=False,
                   info={"backend": "espnet", "search": "beam", **asr.options})
    from speechlm.asr.ctc_graph import DecodingGraph
    from speechlm.asr.ctc_lattice import EspnetLatticeASR, LatticeDecodeConfig

    asr = EspnetASR(model_dir, device=device, **search)
    config = LatticeDecodeConfig.from_dict(
        {"nbest": max(nbest, 10), "ctc_weight": asr.options["ctc_weight"],
         "penalty": asr.options["penalty"], **options})
    lattice_asr = EspnetLatticeASR(asr, DecodingGraph.read(graph), config)

    def decode_lattice(samples, utt):
        feats = asr.features(samples)
        if not len(feats):
            return [], None
        hyps, lattice = lattice_asr(feats, utt)
        return hyps[:nbest], lattice

    return ASR(name, asr.sample_rate, decode_lattice, am_scale=1.0 / config.lm_scale,
               has_lattice=True, info={"backend": "espnet", "search": "lattice",
                                       **config.__dict__})


def _consistent_first_score(hyps: list[Hypothesis], lattice, am_scale: float
                            ) -> list[Hypothesis]:
    """PocketSphinx's first hypothesis carries the decoder's own score, on another scale
    than the lattice paths after it; give it its lattice path's ``am_scale * am + lm``
    (the decoder's 1-best is the lattice's best path at this scale), so that scores
    compare when rescoring."""
    if not hyps or lattice is None or hyps[0].scores:
        return hyps
    best = lattice.best_path(am_scale=am_scale)
    if " ".join(best.words) != hyps[0].text:
        return hyps
    first = Hypothesis(hyps[0].text, float(best.tot_score), hyps[0].tokens,
                       (("am", float(best.am_score)), ("lm", float(best.lm_score))))
    return [first, *hyps[1:]]


# ---- LLM -------------------------------------------------------------------------------
def load_llm(path: str | os.PathLike, **kwargs: Any) -> LLM:
    """The runtime's :class:`speechlm.runtime.LLM` from a local checkpoint dir (never the
    network), e.g. the embedded LM ``speechlm lm train`` writes.

    Args:
        path: a transformers checkpoint directory.
        **kwargs: ``LLM.from_pretrained`` options (``dtype``, ``device``, ``attention``...).

    >>> llm = load_llm("exp/lm")                                       # doctest: +SKIP
    >>> llm.score(["ten of clubs", "ten of clothes"])                  # doctest: +SKIP
    [-14.2, -19.8]
    """
    from speechlm.runtime import LLM

    return LLM.from_pretrained(path, **kwargs)


@dataclass(frozen=True)
class Rescored:
    """One N-best entry after LLM rescoring (natural-log scores).

    ``tot_score = score + llm_scale * llm_score`` where ``score`` is the ASR's.
    """

    text: str
    score: float
    llm_score: float
    tot_score: float
    scores: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"text": self.text, "score": round(self.score, 4),
                "llm_score": round(self.llm_score, 4), "tot_score": round(self.tot_score, 4)}


def rescore_nbest(llm: LLM, hyps: list[Hypothesis] | list[tuple[str, float]], *,
                  prefix: str | None = None, llm_scale: float = 0.5) -> list[Rescored]:
    """Re-rank an N-best list by ``score + llm_scale * llm_score`` (LLM through
    ``LLM.score``, with EOS scored so that short and long texts compare).

    Args:
        llm: the runtime's LLM (``load_llm``).
        hyps: ``Hypothesis`` objects or ``(text, score)`` pairs, any order.
        prefix: text the hypotheses continue (a prompt, the previous sentence).
        llm_scale: weight of the LLM's log-probability.

    Returns:
        The entries sorted best first.

    Raises:
        ValueError: an empty text, or one over the LLM's context length.
    """
    pairs = [(h.text, h.score) if isinstance(h, Hypothesis) else (str(h[0]), float(h[1]))
             for h in hyps]
    if not pairs:
        return []
    llm_scores = llm.score([t for t, _ in pairs], prefix=prefix,
                           append_eos=bool(getattr(llm, "eos_ids", True)))
    out = [Rescored(t, s, float(ls), s + llm_scale * float(ls))
           for (t, s), ls in zip(pairs, llm_scores, strict=True)]
    return sorted(out, key=lambda r: -r.tot_score)


# ---- SLU (hook) ------------------------------------------------------------------------
SLU_INPUTS = ("text", "nbest", "wcn")


def slu(slu_dir: str | os.PathLike, *, input: str = "wcn", **llm_kwargs: Any):
    """Load an SLU model dir (``speechlm slu train``, issue 7): returns a function that
    gives the intent of a :class:`Transcript` (or of a plain text).

    Args:
        slu_dir: the SLU dir (``slu.json``, its LM or adapter, few-shot examples).
        input: what of a Transcript the classifier reads: ``"text"`` (1-best),
            ``"nbest"`` or ``"wcn"`` (serialized as the SLU dir's config says; falls
            back to the 1-best where the model gives no WCN).
        **llm_kwargs: options of the LM loading (``dtype``, ``device``...).

    Raises:
        FileNotFoundError: not an SLU dir.

    >>> intent_of = slu("exp/slu_icl")                                # doctest: +SKIP
    >>> intent_of(asr("wake_me_at_seven.wav"))                         # doctest: +SKIP
    'alarm_set'
    """
    if input not in SLU_INPUTS:
        raise ValueError(f"input must be one of {SLU_INPUTS}, got {input!r}")
    from speechlm.llm.serialize import serialize_nbest, serialize_wcn
    from speechlm.llm.slu import load_classifier

    classifier, config = load_classifier(slu_dir, **llm_kwargs)

    def intent_of(transcript: Transcript | str) -> str:
        if isinstance(transcript, str):
            return classifier.classify(transcript)
        text = transcript.text
        if input == "nbest":
            text = serialize_nbest([h.text for h in transcript.nbest], config.serialize)
        elif input == "wcn" and transcript.wcn is not None:
            text = serialize_wcn(transcript.to_json()["wcn"]["bins"], config.serialize)
        return classifier.classify(text, transcript.utt)

    return intent_of
