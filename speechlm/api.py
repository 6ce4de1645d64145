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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from speechlm.core.hypothesis import Hypothesis

if TYPE_CHECKING:
    from speechlm.lattice import ConfusionNetwork, Lattice
    from speechlm.runtime import LLM

__all__ = ["ASR", "AudioLimits", "AudioRejected", "Transcript", "load_asr", "load_llm", "rescore",
           "read_audio_input", "rescore_nbest", "rescore_ranked", "rescored_json", "slu"]

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

    def word_times(self) -> list[tuple[str, float, float]]:
        """``(word, start s, end s)`` of each word of ``text``, from the lattice's best path
        or else the CTM, whichever spells ``text``; ``[]`` when neither does (beam search
        has no times; an attention-rescored 1-best may not be a lattice path)."""
        words = self.text.split()
        if self.lattice is not None:
            path = self.lattice.best_path()
            if list(path.words) == words:
                return list(zip(path.words, path.starts, path.ends, strict=True))
        ctm = [line.split() for line in self.ctm]
        if [c[4] for c in ctm] == words:
            return [(c[4], float(c[2]), float(c[2]) + float(c[3])) for c in ctm]
        return []

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

    Made by :func:`load_asr`, around the one ``speechlm.asr.Recognizer`` that ``speechlm
    decode`` and the server also use. Calls are serialized by a lock (the decoders keep
    per-utterance state), so one ``ASR`` can be shared by threads.

    Attributes:
        name: ``"pocketsphinx"`` or the model dir's experiment tag.
        sample_rate: the model's rate; input at another rate is resampled.
        has_lattice: whether results carry a lattice and WCN.
        config: the resolved ``speechlm.asr.DecodeConfig``.
    """

    def __init__(self, recognizer) -> None:
        self.recognizer = recognizer
        self.config = recognizer.config
        self.name = recognizer.name
        self.sample_rate = recognizer.sample_rate
        self.has_lattice = recognizer.has_lattice
        self.am_scale = recognizer.am_scale
        self.info = recognizer.info
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
        return self.transcribe([audio], sample_rate, utts=[utt], wcn=wcn, limits=limits)[0]

    def transcribe(self, audios: list, sample_rate: int | None = None, *,
                   utts: list[str] | None = None, batch_size: int | None = None,
                   wcn: bool = True, limits: AudioLimits = AudioLimits(),
                   errors: str = "raise") -> list:
        """Transcribe several utterances, ``batch_size`` at a time (default: the config's).

        Args:
            audios: file paths, encoded bytes or sample arrays (all at ``sample_rate``).
            utts: utterance ids (default ``utt1``, ``utt2``...).
            batch_size: utterances per recognizer call; backends that batch (padded
                encoder batches) gain from more, the others decode one at a time.
            errors: ``"raise"``: an input that cannot be transcribed raises; ``"return"``:
                its :class:`AudioRejected` takes its place in the list and the others are
                transcribed (a server's batch of requests).

        Returns:
            One :class:`Transcript` per input, in order (or its ``AudioRejected``).

        Raises:
            AudioRejected: one input cannot be transcribed (the message names it).
        """
        if errors not in ("raise", "return"):
            raise ValueError(f"errors must be 'raise' or 'return', got {errors!r}")
        from speechlm.data.audio import resample

        if isinstance(audios, (str, bytes, os.PathLike, np.ndarray)):
            raise TypeError("transcribe takes a list of audios; call the ASR itself for one "
                            "(asr(audio, sample_rate))")
        utts = utts or [f"utt{k + 1}" for k in range(len(audios))]
        if len(utts) != len(audios):
            raise ValueError(f"{len(audios)} audios but {len(utts)} utterance ids")
        size = batch_size or self.config.batch_size
        if size < 1:
            raise ValueError(f"batch_size must be >= 1, got {size}")
        inputs = []
        rejected: dict[int, AudioRejected] = {}
        for k, (utt, audio) in enumerate(zip(utts, audios, strict=True)):
            try:
                samples, rate, channels = read_audio_input(audio, sample_rate, limits)
            except AudioRejected as e:
                if errors == "return":
                    rejected[k] = e
                    continue
                if len(audios) == 1:
                    raise
                raise AudioRejected(e.code, f"{utt}: {e}") from None
            inputs.append((utt, samples, rate, channels))
        out: list = []
        for k in range(0, len(inputs), size):
            chunk = inputs[k:k + size]
            start = time.perf_counter()
            batch = [(utt, resample(x, rate, self.sample_rate)) for utt, x, rate, _ in chunk]
            with self._lock:
                results = self.recognizer.recognize(batch, wcn=wcn)
            seconds = (time.perf_counter() - start) / len(chunk)
            for (utt, x, rate, channels), r in zip(chunk, results, strict=True):
                out.append(Transcript(text=r.text, nbest=tuple(r.hyps), lattice=r.lattice,
                                      wcn=r.cn, utt=utt, duration=len(x) / rate,
                                      sample_rate=rate, channels=channels, decode_s=seconds,
                                      model=self.name))
        for k in sorted(rejected):  # back in their places
            out.insert(k, rejected[k])
        return out


def _pretrained_backend(model: str | os.PathLike) -> str | None:
    """The backend of a catalogue ASR name or a CTranslate2 Whisper dir, else None."""
    from speechlm.core import catalogue

    if str(model) in catalogue.MODELS:
        card = catalogue.get(str(model))
        if card.task != "asr":
            raise ValueError(f"{model!r} is a {card.task} model of the catalogue, not ASR; "
                             f"ASR models: {', '.join(catalogue.names('asr'))}")
        return {"ctranslate2": "whisper", "onnx": "moonshine",
                "pocketsphinx": POCKETSPHINX}[card.format]
    path = Path(model)
    if (path / "model.bin").is_file() and (path / "vocabulary.txt").is_file():
        return "whisper"
    return None


def load_asr(model: str | os.PathLike = POCKETSPHINX, graph: str | os.PathLike | None = None,
             *, nbest: int | None = None, device: str = "cpu", **options: Any) -> ASR:
    """Load an ASR model once; the returned :class:`ASR` transcribes audio.

    Args:
        model: ``"pocketsphinx"`` (general US English from the pip wheel, with lattices),
            a pretrained ASR model of the catalogue (``whisper-tiny.en``,
            ``whisper-base``, ``moonshine-tiny-en``: ``speechlm models``), a user's
            CTranslate2 Whisper directory (``model.bin`` + ``vocabulary.txt``), or a recipe
            model dir (``egs/<corpus>/asr1/exp/<tag>/model``).
        graph: for a model dir, its decoding graph dir (``speechlm make-graph``,
            ``exp/<tag>/graph``): decode through a CTC lattice whose N-best is rescored by
            the attention decoder, giving lattice, WCN and CTM. Without it: joint
            CTC/attention beam search (N-best only).
        nbest: hypotheses kept per utterance (default 5; 1 for Moonshine, which gives a
            1-best only).
        device: device of the network (``cpu``, ``cuda``).
        **options: any other ``speechlm.asr.DecodeConfig`` field, by the same name as the
            YAML key and the ``speechlm decode`` flag (``beam``, ``ctc_weight``,
            ``search_beam``, ``lattice_beam``, ``lm_scale``, ``ps_lm``, ``ps_jsgf``,
            ``batch_size``...).

    Raises:
        FileNotFoundError / ValueError: a missing or broken model dir or graph, an
            unknown option.

    >>> asr = load_asr("pocketsphinx", nbest=3)                     # doctest: +SKIP
    >>> asr                                                         # doctest: +SKIP
    ASR('pocketsphinx', sample_rate=16000, lattice=True)
    """
    from speechlm.asr.decode_config import DecodeConfig
    from speechlm.asr.recognizer import Recognizer

    if nbest is not None and nbest < 1:
        raise ValueError(f"nbest must be >= 1, got {nbest}")
    for key in ("backend", "model", "graph", "lattice", "nbest", "device"):
        if key in options:
            raise ValueError(f"{key} is set by load_asr's own arguments")
    backend = _pretrained_backend(model)
    if str(model) == POCKETSPHINX or backend == POCKETSPHINX:
        if graph is not None:
            raise ValueError("graph is for a model dir; PocketSphinx takes ps_lm/ps_jsgf "
                             "options")
        fields = {"backend": "pocketsphinx", "lattice": True}
    elif backend is not None:
        if graph is not None:
            raise ValueError(f"graph is for a recipe model dir, not {backend} {model!r}")
        fields = {"backend": backend, "model": str(model), "lattice": True}
    else:
        fields = {"backend": "espnet", "model": str(model),
                  "graph": None if graph is None else str(graph), "lattice": graph is not None}
    if nbest is None:
        nbest = 1 if fields["backend"] == "moonshine" else 5
    config = DecodeConfig.from_dict({**fields, "nbest": nbest, "device": device},
                                    source="load_asr options", **options).with_model_defaults()
    return ASR(Recognizer(config))


# ---- LLM -------------------------------------------------------------------------------
DEFAULT_LLM = "smollm2-135m-instruct"


def load_llm(path: str | os.PathLike = DEFAULT_LLM, **kwargs: Any) -> LLM:
    """The runtime's :class:`speechlm.runtime.LLM` from a local checkpoint dir (never the
    network), e.g. the embedded LM ``speechlm lm train`` writes, a catalogue LLM
    (``smollm2-135m-instruct``), or an OpenAI-compatible server's base URL (vLLM, ``speechlm
    serve``'s OpenAI server): then a ``speechlm.runtime.RemoteLLM`` with the same
    ``score``/``generate``.

    Args:
        path: a transformers checkpoint directory, a catalogue name (default: SmolLM2-135M-
            Instruct, installed by ``tools/setup.sh``) or an ``http(s)://`` URL.
        **kwargs: ``LLM.from_pretrained`` options (``dtype``, ``device``, ``attention``...);
            for a URL, ``RemoteLLM``'s (``model``, ``api_key``, ``timeout``...).

    >>> llm = load_llm("exp/lm")                                       # doctest: +SKIP
    >>> llm.score(["ten of clubs", "ten of clothes"])                  # doctest: +SKIP
    [-14.2, -19.8]
    """
    if str(path).startswith(("http://", "https://")):
        from speechlm.runtime.remote import RemoteLLM

        return RemoteLLM(str(path), **kwargs)
    from speechlm.runtime import LLM

    return LLM.from_pretrained(path, **kwargs)


def rescore_nbest(llm: LLM, hyps: list[Hypothesis] | list[tuple[str, float]], *,
                  prefix: str | None = None, llm_scale: float = 0.5,
                  length_bonus: float = 0.0) -> list[Hypothesis]:
    """Re-rank an N-best list by the toolkit's one rescoring formula
    (``speechlm.llm.rescore.tot_score``: ``score + llm_scale * llm_score + length_bonus *
    words``), the LLM's log-probability through ``LLM.score`` with EOS scored so that short
    and long texts compare. ``speechlm rescore`` ranks by the same formula.

    Args:
        llm: the runtime's LLM (``load_llm``).
        hyps: ``Hypothesis`` objects or ``(text, score)`` pairs, any order.
        prefix: text the hypotheses continue (a prompt, the previous sentence).
        llm_scale: weight of the LLM's log-probability.
        length_bonus: added per word.

    Returns:
        Hypotheses best first; ``score`` is the total, the parts ``first_pass`` and ``llm``
        are in ``scores`` (:func:`rescored_json` gives the HTTP API's form).

    Raises:
        ValueError: an empty text, or one over the LLM's context length.
    """
    from speechlm.llm.rescore import rerank

    given = [h if isinstance(h, Hypothesis) else Hypothesis(str(h[0]), float(h[1]))
             for h in hyps]
    if not given:
        return []
    llm_scores = llm.score([h.text for h in given], prefix=prefix,
                           append_eos=bool(getattr(llm, "eos_ids", True)))
    return rerank(given, [float(s) for s in llm_scores], llm_scale=llm_scale,
                  length_bonus=length_bonus)


def rescore(nbest: Any, method: str = "lm", *, llm: Any = DEFAULT_LLM,
            model: str | os.PathLike | None = None, llm_scale: float = 0.5,
            threshold: float = 0.3, shots: int = 0, demos: str = "random",
            train: Any = None) -> dict[str, str]:
    """Second pass over N-best lists with one method of ``speechlm.llm.second_pass``
    (``speechlm rescore --method``, which also tunes ``llm_scale``/``threshold`` on dev).

    Args:
        nbest: one N-best (a list of texts, best first), ``{utt: [texts]}``, a
            HyPoradise-form file, or ``NbestItem`` s.
        method: ``lm``, ``lm_norm``, ``prompt``, ``tap``, ``ger-select``, ``ger-free``,
            ``mwer`` or ``pll``.
        llm: a loaded LLM or what :func:`load_llm` takes (not used by ``mwer``/``pll``).
        model: the scorer dir of ``mwer`` or ``pll`` (``speechlm rescore train --method
            mwer|pll``).
        llm_scale: weight of the method's score beside the first pass (rank prior when
            the N-best has no scores).
        threshold: the ``ger-free`` guard (edit distance to the closest hypothesis over its
            length) past which the 1-best is kept.
        shots, demos, train: demonstrations (``random``/``similar``) from ``train`` (same
            forms as ``nbest``, with references).

    Returns:
        ``{utt: chosen text}`` (a single list gets the utterance id ``"utt"``).
    """
    from speechlm.llm.second_pass import methods as sp
    from speechlm.llm.second_pass.nbest import NbestItem, parse_nbest, read_nbest

    def items_of(x: Any) -> list:
        if isinstance(x, (str, os.PathLike)):
            return read_nbest(x)[0]
        if isinstance(x, dict):
            return parse_nbest([{"id": u, "input": list(h)} for u, h in x.items()])[0]
        if x and all(isinstance(h, str) for h in x):
            return parse_nbest([{"id": "utt", "input": list(x)}])[0]
        if all(isinstance(h, NbestItem) for h in x):
            return list(x)
        raise ValueError("nbest: expected a list of texts, {utt: [texts]}, a file or "
                         "NbestItems")

    items = items_of(nbest)
    config = sp.MethodConfig(method, shots=shots, demos=demos)
    if method in ("mwer", "pll"):
        from speechlm.llm.second_pass.run import load_trained_scorer

        if model is None:
            raise ValueError(f"method {method!r} needs model= (a scorer dir from 'speechlm "
                             f"rescore train --method {method}')")
        return sp.choose(items, load_trained_scorer(method, model)[0].score(items), llm_scale)
    if not hasattr(llm, "score"):
        llm = load_llm(llm)
    builder = sp.PromptBuilder(llm.tokenizer)
    if method == "tap":
        from speechlm.llm.second_pass.prompt import activation_turns

        builder.activation = activation_turns(llm)
    pool = None
    if shots:
        encoder = None
        if demos == "similar":
            from speechlm.encoders import load_encoder

            encoder = load_encoder("minilm-l6")
        pool = sp.DemoPool(items_of(train or []), shots, demos, encoder=encoder)
    if method == "ger-free":
        return sp.guard(items, sp.correct(llm, items, config, builder=builder, demos=pool),
                        threshold)[0]
    return sp.choose(items, sp.score(llm, items, config, builder=builder, demos=pool),
                     llm_scale)


SECOND_PASS_METHODS = ("lm", "lm_norm", "prompt", "tap", "ger-select", "ger-free", "mwer", "pll")
TRAINED_METHODS = ("mwer", "pll")


def rescore_ranked(hyps: list[str] | list[tuple[str, float]], method: str = "lm", *,
                   llm: Any = None, scorer: Any = None, llm_scale: float = 0.5,
                   threshold: float = 0.3, utt: str = "utt", cache: dict | None = None
                   ) -> dict:
    """One N-best through one method of ``speechlm.llm.second_pass``, every hypothesis with
    its score (the form of ``/v1/rescore``).

    ``tot_score = first_pass + llm_scale * llm_score``, where ``first_pass`` is the given
    score, or the rank prior ``-rank`` when the hypotheses come without scores (texts in
    first-pass order), and ``llm_score`` is the method's score of the hypothesis. ``ger-free``
    also writes a transcript, kept when it is within ``threshold`` (word edit distance over
    the closest hypothesis's length) of the N-best, else the 1-best.

    Args:
        hyps: texts best first, or ``(text, score)`` pairs (natural-log first-pass scores).
        method: one of :data:`SECOND_PASS_METHODS`.
        llm: the runtime LLM (every method but ``mwer``/``pll``).
        scorer: a trained scorer, or its dir (``mwer``/``pll``).
        cache: a dict the caller keeps between calls: loaded scorer dirs and the
            task-activating turns (generated once per LLM) are kept in it.

    Returns:
        ``{"method", "text" (the chosen transcript), "hyps": [{"text", "score",
        "llm_score", "tot_score"}] best first, "correction" (ger-free: ``{"text", "kept",
        "reason"}``, else None), "notes" (dropped duplicates, a failed scoring)}``.

    Raises:
        ValueError: an unknown method, an empty hypothesis, a missing LLM or scorer.
        FileNotFoundError: a scorer dir that is missing or of the other method.
    """
    from speechlm.llm.second_pass import methods as sp
    from speechlm.llm.second_pass.nbest import parse_nbest
    from speechlm.llm.second_pass.prompt import activation_turns

    if method not in SECOND_PASS_METHODS:
        raise ValueError(f"method must be one of {', '.join(SECOND_PASS_METHODS)}, got "
                         f"{method!r}")
    pairs = [(h, None) if isinstance(h, str) else (str(h[0]), float(h[1])) for h in hyps]
    if not pairs:
        raise ValueError(f"utterance {utt}: no hypotheses")
    for k, (text, _) in enumerate(pairs):
        if not text.strip():
            raise ValueError(f"utterance {utt}: hypothesis {k + 1} is empty")
    given = [sc for _, sc in pairs]
    if any(sc is None for sc in given) and any(sc is not None for sc in given):
        raise ValueError(f"utterance {utt}: give a score for every hypothesis or for none")
    entry: dict = {"id": utt, "input": [t for t, _ in pairs]}
    if given[0] is not None:
        entry["scores"] = given
    items, found = parse_nbest([entry], "request")
    item, notes = items[0], [str(n) for n in found if n.kind != "missing_reference"]
    cache = cache if cache is not None else {}
    config = sp.MethodConfig(method)
    correction = None
    if method in TRAINED_METHODS:
        if scorer is None:
            raise ValueError(f"method {method!r} needs a trained scorer (a dir from 'speechlm "
                             f"rescore train --method {method}')")
        if isinstance(scorer, (str, os.PathLike)):
            from speechlm.llm.second_pass.run import load_trained_scorer

            key = (method, str(scorer))
            if key not in cache:
                cache[key] = load_trained_scorer(method, scorer)[0]
            scorer = cache[key]
        scores = scorer.score([item])[item.utt].scores
    else:
        if llm is None:
            raise ValueError(f"method {method!r} needs an LLM")
        builder = sp.PromptBuilder(llm.tokenizer)
        if method == "tap":
            key = ("activation", id(llm))
            if key not in cache:
                cache[key] = activation_turns(llm)
            builder.activation = cache[key]
        if method == "ger-free":
            got = sp.correct(llm, [item], config, builder=builder, notes=found)[item.utt]
            texts, counts = sp.guard([item], {item.utt: got}, threshold)
            correction = {"text": got.text, "kept": bool(counts["kept"]),
                          "reason": got.reason or ("" if counts["kept"] else "drift")}
            scores = [0.0] * len(item.hyps)
        else:
            res = sp.score(llm, [item], config, builder=builder, notes=found)[item.utt]
            scores = res.scores
            if res.failed:
                notes += [str(n) for n in found if n.kind in ("failed", "context")]
    tot = [fp + llm_scale * v for fp, v in zip(item.first_pass, scores, strict=True)]
    order = sorted(range(len(tot)), key=lambda k: (-tot[k], k))
    ranked = [{"text": item.hyps[k], "score": round(item.first_pass[k], 4),
               "llm_score": round(scores[k], 4), "tot_score": round(tot[k], 4)}
              for k in order]
    text = texts[item.utt] if correction is not None else ranked[0]["text"]
    return {"method": method, "text": text, "hyps": ranked, "correction": correction,
            "notes": notes}


def rescored_json(h: Hypothesis) -> dict:
    """``{"text", "score" (first pass), "llm_score", "tot_score"}`` of a rescored hypothesis."""
    return {"text": h.text, "score": round(float(h.score_of("first_pass", h.score)), 4),
            "llm_score": round(float(h.score_of("llm", 0.0)), 4),
            "tot_score": round(float(h.score), 4)}


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
            text = serialize_wcn(transcript.wcn, config.serialize)
        return classifier.classify(text, transcript.utt)

    return intent_of
