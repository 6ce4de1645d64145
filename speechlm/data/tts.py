"""Speech synthesis with espeak-ng and Piper, for extra training audio (digits, SLU sentences).

espeak-ng comes from the ``espeakng-loader`` wheel, which bundles ``libespeak-ng.so`` and its
``espeak-ng-data``, so nothing is installed system-wide. We drive the C API through ctypes:
``espeak_Initialize`` in synchronous mode with a synth callback that collects the int16 samples
(22.05 kHz), ``espeak_SetVoiceByName("voice+variant")`` and ``espeak_SetParameter``.

espeak is a formant synthesiser: robotic, but intelligible and fast (well under a millisecond of
CPU per short word), and its many accents x variants x rates x pitches make cheap speaker
diversity. ``augment`` adds simple noise and reverberation on top.

Piper (``piper-tts``) is a neural (VITS) synthesiser: one voice per model, natural-sounding,
~0.3 s of CPU per second of speech. Its voices come from the model catalogue (``piper-joe``)
or a user's ``.onnx`` file; ``piper_renditions`` varies its length and noise scales so that
one voice gives several renditions. Voices of both kinds are written ``KIND:NAME``
(``parse_voice``): ``espeak:en-us+m3``, ``piper:joe``; ``Synthesizer`` speaks either.

>>> synth = EspeakSynthesizer(sample_rate=16000)
>>> audio, sr = synth.synthesize("seven", EspeakVoice("en-us", "m3", rate_wpm=150))
>>> audio.dtype, sr
(dtype('float32'), 16000)
>>> parse_voice("piper:joe"), parse_voice("espeak:en-us+m3").spec
(PiperVoice(model='joe', length_scale=None, noise_scale=None, noise_w_scale=None), 'en-us+m3')
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import re
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torchaudio

# Variants that sound like plain human voices. The other files in voices/!v (Demonic, croak,
# whisper, robosoft...) are effects; they can still be asked for by name.
DEFAULT_VARIANTS: tuple[str | None, ...] = (
    None, "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8",
    "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3", "klatt4",
)  # fmt: skip
# en-shaw expects Shavian script; on Latin text it is a near copy of en-gb, so it adds nothing.
_NOT_DEFAULT_LANGUAGES = frozenset({"en-shaw"})

# Constants from espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # return an error instead of calling exit()
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _PITCH, _RANGE, _WORDGAP = 1, 3, 4, 7
_EE_OK = 0
_RATE_MIN, _RATE_MAX = 80, 450  # espeak clamps to this range; we refuse instead
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class SynthesisError(RuntimeError):
    """espeak failed, or gave no audio, for a text and voice."""


@dataclass(frozen=True)
class EspeakVoice:
    """One espeak voice: an accent, a variant (timbre) and prosody settings.

    Args:
        name: espeak voice (language) id such as ``"en-us"``, ``"en-gb-scotland"``, ``"en-029"``;
            see ``list_english_voices()``. The voice file name (``"en"`` for en-gb) works too.
        variant: file name in ``espeak-ng-data/voices/!v`` such as ``"m3"``, ``"f2"``,
            ``"klatt2"``, ``"whisper"`` (see ``list_variants()``), or None for the plain voice.
        rate_wpm: speaking rate in words per minute, 80-450.
        pitch: base pitch, 0-100 (50 is the voice's normal pitch).
        pitch_range: pitch range (intonation), 0-100; 0 is monotone.
        gap: extra pause between words, in units of 10 ms at the default rate, 0-100.

    Names are checked against the installed espeak data when synthesising, not here.

    >>> EspeakVoice("en-gb-scotland", "f2", rate_wpm=140, pitch=60).id
    'en-gb-scotland_f2_r140_p60_pr50_g0'
    """

    kind: ClassVar[str] = "espeak"
    name: str
    variant: str | None = None
    rate_wpm: int = 175
    pitch: int = 50
    pitch_range: int = 50
    gap: int = 0

    def __post_init__(self) -> None:
        # "+" separates voice and variant in espeak's "name+variant" spec.
        if not self.name or "+" in self.name or any(c.isspace() for c in self.name):
            raise ValueError(f"bad espeak voice name {self.name!r}")
        if self.variant is not None and (not self.variant or "+" in self.variant):
            raise ValueError(f"bad espeak variant {self.variant!r} for voice {self.name!r}")
        for field, value, lo, hi in (
            ("rate_wpm", self.rate_wpm, _RATE_MIN, _RATE_MAX),
            ("pitch", self.pitch, 0, 100),
            ("pitch_range", self.pitch_range, 0, 100),
            ("gap", self.gap, 0, 100),
        ):
            if not lo <= value <= hi:
                raise ValueError(f"EspeakVoice.{field}={value} is outside [{lo}, {hi}]")

    @property
    def spec(self) -> str:
        """The ``name+variant`` string espeak understands."""
        return self.name if self.variant is None else f"{self.name}+{self.variant}"

    @property
    def label(self) -> str:
        """``KIND:NAME`` as ``parse_voice`` reads it, without prosody: ``espeak:en-us+m3``."""
        return f"espeak:{self.spec}"

    @property
    def id(self) -> str:
        """Filename-safe id naming every field, e.g. ``en-us_m3_r175_p50_pr50_g0``.

        Parts are joined by ``_`` and sanitised to ``[A-Za-z0-9.-]``, so the id always has
        exactly five underscores. Hence no id followed by ``-`` begins another id, which keeps
        ``<id>-<utt>`` Kaldi utterance ids grouped by voice when sorted.
        """
        variant = "default" if self.variant is None else self.variant
        parts = [self.name, variant, f"r{self.rate_wpm}", f"p{self.pitch}"]
        parts += [f"pr{self.pitch_range}", f"g{self.gap}"]
        return "_".join(re.sub(r"[^A-Za-z0-9.-]", "-", p) for p in parts)


def espeak_data_dir() -> Path:
    """The ``espeak-ng-data`` directory bundled with espeakng-loader."""
    import espeakng_loader

    return Path(espeakng_loader.get_data_path())


@functools.cache
def _language_ids() -> dict[str, str]:
    """Map each voice's primary language id (``en-gb``) to its path under lang/ (``gmw/en``)."""
    lang_dir = espeak_data_dir() / "lang"
    ids = {}
    for path in sorted(p for p in lang_dir.rglob("*") if p.is_file()):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "language":
                ids[fields[1].lower()] = path.relative_to(lang_dir).as_posix()
                break  # later "language" lines are fallbacks ("en" for en-us), not the voice's id
    return ids


@functools.cache
def _voice_paths() -> dict[str, str]:
    """Map voice names (language id or file name, lower case) to file paths under lang/.

    espeak_SetVoiceByName matches file names ("en") but not language ids ("en-gb"), so we
    resolve names ourselves and hand espeak the path.
    """
    by_file = {path.split("/")[-1].lower(): path for path in _language_ids().values()}
    return {**by_file, **_language_ids()}


def list_english_voices() -> list[str]:
    """Language ids of the bundled English voices (accents), sorted.

    Returns:
        e.g. ``["en-029", "en-gb", "en-gb-scotland", ..., "en-us", "en-us-nyc"]``.
    """
    return sorted(n for n in _language_ids() if n == "en" or n.startswith("en-"))


def list_variants() -> list[str]:
    """Names of the bundled voice variants (files in ``espeak-ng-data/voices/!v``), sorted."""
    return list(_variant_names())


@functools.cache
def _variant_names() -> tuple[str, ...]:
    return tuple(sorted(p.name for p in (espeak_data_dir() / "voices" / "!v").iterdir()))


def check_voice(voice: EspeakVoice) -> None:
    """Raise ValueError naming the voice if its name or variant is not in the espeak data.

    espeak itself silently ignores an unknown variant, so we check before synthesising.
    """
    if voice.name.lower() not in _voice_paths():
        raise ValueError(
            f"unknown espeak voice {voice.name!r} (in {voice.id}); "
            f"English voices: {', '.join(list_english_voices())}"
        )
    if voice.variant is not None and voice.variant not in _variant_names():
        raise ValueError(f"unknown espeak variant {voice.variant!r} (in {voice.id})")


class _Engine:
    """The process-wide espeak-ng library: loaded and initialised once, used under a lock."""

    _instance: _Engine | None = None
    _instance_lock = threading.Lock()

    def __init__(self) -> None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        lib.espeak_Synth.restype = ctypes.c_int
        # espeak seeds its noise generator (breath, frication) from the clock; we reseed it per
        # utterance so that output is reproducible. Absent before espeak-ng 1.52.
        self._set_rand_seed = getattr(lib, "espeak_ng_SetRandSeed", None)
        if self._set_rand_seed is not None:
            self._set_rand_seed.argtypes = [ctypes.c_long]
        data = str(espeak_data_dir()).encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise SynthesisError(f"espeak_Initialize failed ({rate}) with data in {data.decode()}")
        self.lib, self.sample_rate = lib, rate
        self.lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        # Keep a reference: ctypes frees the trampoline when the Python object dies.
        self._callback = _SYNTH_CALLBACK(self._on_audio)
        lib.espeak_SetSynthCallback(self._callback)
        self._spec: str | None = None

    @classmethod
    def get(cls) -> _Engine:
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _on_audio(self, wav, num_samples: int, events) -> int:
        # In synchronous mode espeak calls this from inside espeak_Synth, on our thread.
        if wav and num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (num_samples,)).copy())
        return 0  # 0 = go on

    def synthesize(self, text: str, voice: EspeakVoice) -> np.ndarray:
        """int16 samples at ``self.sample_rate``; raises SynthesisError."""
        where = f"text {text!r} with voice {voice.id}"
        with self.lock:
            spec = _voice_paths()[voice.name.lower()]  # e.g. "gmw/en"
            spec += "" if voice.variant is None else f"+{voice.variant}"
            if spec != self._spec:  # loading a voice re-reads its files; skip when unchanged
                self._spec = None
                err = self.lib.espeak_SetVoiceByName(spec.encode())
                if err != _EE_OK:
                    raise SynthesisError(f"espeak_SetVoiceByName({spec!r}) failed ({err}): {where}")
                self._spec = spec
            # Parameters outlive voice changes, so set all of them every time.
            for param, value in (
                (_RATE, voice.rate_wpm), (_PITCH, voice.pitch),
                (_RANGE, voice.pitch_range), (_WORDGAP, voice.gap),
            ):  # fmt: skip
                err = self.lib.espeak_SetParameter(param, value, 0)
                if err != _EE_OK:
                    raise SynthesisError(f"espeak_SetParameter({param}, {value}) failed: {where}")
            buf = text.encode("utf-8") + b"\0"
            if self._set_rand_seed is not None:
                self._set_rand_seed(zlib.crc32(voice.id.encode() + b"\0" + buf))
            self._chunks = []
            err = self.lib.espeak_Synth(
                buf, len(buf), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            )
            chunks, self._chunks = self._chunks, []
        if err != _EE_OK:
            raise SynthesisError(f"espeak_Synth failed ({err}): {where}")
        samples = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        if not samples.any():
            raise SynthesisError(f"espeak gave no audio for {where}")
        return samples


class EspeakSynthesizer:
    """Text to speech with espeak-ng, resampled to ``sample_rate``.

    espeak-ng keeps its state (current voice, parameters, output callback) in globals of the
    shared library. So the library is loaded and initialised once per process, all instances
    share it, and calls are serialised by one process-wide lock: it is safe from many threads
    but never parallel. Use one instance per process; to use more cores, use more processes.

    Output is reproducible for the same sequence of calls in a fresh process (the noise
    generator is reseeded from text and voice on every call), but repeating one call later in
    the same process gives slightly different audio: espeak's pitch flutter is a global
    oscillator whose phase carries over between utterances (durations differ by under 1%).

    Synthesis takes ~0.5 ms per short word; resampling runs in torch, whose intra-op threads
    only slow short clips down (5x here when cores are shared): batch jobs should call
    ``torch.set_num_threads(1)``, as ``speechlm.bin.synth_data_dir`` does.

    Args:
        sample_rate: output sample rate in Hz; espeak itself produces 22050 Hz.

    >>> synth = EspeakSynthesizer()
    >>> audio, sr = synth.synthesize("turn on the lights", EspeakVoice("en-gb", "f2"))
    >>> sr, audio.ndim
    (16000, 1)
    """

    def __init__(self, sample_rate: int = 16000) -> None:
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        self.sample_rate = sample_rate
        self._engine = _Engine.get()
        # transforms.Resample is functional.resample with the sinc kernel computed once
        # (0.1 ms instead of 2 ms per short clip).
        self._resample = None
        if sample_rate != self._engine.sample_rate:
            self._resample = torchaudio.transforms.Resample(self._engine.sample_rate, sample_rate)

    @property
    def native_sample_rate(self) -> int:
        """espeak's own output rate (22050 Hz)."""
        return self._engine.sample_rate

    def synthesize(self, text: str, voice: EspeakVoice) -> tuple[np.ndarray, int]:
        """Speak ``text`` with ``voice``.

        Args:
            text: UTF-8 text; espeak expands digits, abbreviations and punctuation itself.
            voice: the voice; its name and variant must exist in the bundled espeak data.

        Returns:
            ``(samples, sample_rate)``: float32 mono samples in [-1, 1], shape (T,).

        Raises:
            ValueError: unknown voice name or variant.
            SynthesisError: espeak failed or produced silence (e.g. empty text).
        """
        check_voice(voice)
        samples = self._engine.synthesize(text, voice).astype(np.float32) / 32768.0
        if self._resample is not None:
            with torch.no_grad():
                samples = self._resample(torch.from_numpy(samples)).numpy()
            # espeak can hit full scale, and the resampling filter rings a little past it.
            np.clip(samples, -1.0, 1.0, out=samples)
        return samples, self.sample_rate


def default_languages() -> list[str]:
    """English voices ``sample_voices`` draws from by default (all but en-shaw)."""
    return [v for v in list_english_voices() if v not in _NOT_DEFAULT_LANGUAGES]


def sample_voices(
    n: int,
    seed: int,
    *,
    languages: list[str] | None = None,
    variants: list[str | None] | None = None,
    rate_range: tuple[int, int] = (130, 220),
    pitch_range: tuple[int, int] = (25, 75),
) -> list[EspeakVoice]:
    """Draw ``n`` distinct voices, reproducibly for a seed.

    Accent x variant pairs are taken in shuffled passes, so every pair is used once before any
    is repeated; each voice gets a uniform random rate and pitch. The result depends only on the
    arguments (and, with the defaults, on the voices in the installed espeak data).

    Args:
        n: number of voices.
        seed: random seed.
        languages: espeak voice names; default ``default_languages()`` (English accents).
        variants: variant names, None meaning the plain voice; default ``DEFAULT_VARIANTS``.
        rate_range: inclusive range of ``rate_wpm``.
        pitch_range: inclusive range of ``pitch`` (base pitch, 0-100), not of
            ``EspeakVoice.pitch_range``.

    Returns:
        ``n`` voices with distinct ids.

    Raises:
        ValueError: unknown voice or variant name, bad ranges, or ``n`` larger than the
            number of distinct voices the arguments allow.
    """
    languages = default_languages() if languages is None else list(languages)
    variants = list(DEFAULT_VARIANTS) if variants is None else list(variants)
    if not languages or not variants:
        raise ValueError("sample_voices needs at least one language and one variant")
    (r_lo, r_hi), (p_lo, p_hi) = rate_range, pitch_range
    if r_lo > r_hi or p_lo > p_hi:
        raise ValueError(f"empty range: rate_range={rate_range}, pitch_range={pitch_range}")
    pairs = [(lang, var) for lang in languages for var in variants]
    for lang, var in pairs:
        check_voice(EspeakVoice(lang, var, rate_wpm=r_lo, pitch=p_lo))  # also checks ranges
        EspeakVoice(lang, var, rate_wpm=r_hi, pitch=p_hi)
    capacity = len(set(pairs)) * (r_hi - r_lo + 1) * (p_hi - p_lo + 1)
    if n > capacity:
        raise ValueError(f"asked for {n} voices but the arguments allow only {capacity}")
    rng = np.random.default_rng(seed)
    voices: list[EspeakVoice] = []
    seen: set[str] = set()
    while len(voices) < n:
        for i in rng.permutation(len(pairs)):
            lang, var = pairs[i]
            rate = int(rng.integers(r_lo, r_hi + 1))
            pitch = int(rng.integers(p_lo, p_hi + 1))
            voice = EspeakVoice(lang, var, rate_wpm=rate, pitch=pitch)
            if voice.id not in seen:
                seen.add(voice.id)
                voices.append(voice)
                if len(voices) == n:
                    break
    return voices


def augment(
    samples: np.ndarray,
    sr: int,
    rng: np.random.Generator,
    *,
    snr_db_range: tuple[float, float] = (10.0, 30.0),
    reverb_prob: float = 0.3,
) -> np.ndarray:
    """Simple, download-free augmentation: optional synthetic reverb, then additive noise.

    With probability ``reverb_prob`` the audio is convolved with a synthetic room impulse
    response (a direct path plus Gaussian noise under an exponential decay, RT60 0.15-0.6 s)
    and brought back to its original RMS. Then white or pink noise (equally likely) is added at
    an SNR drawn uniformly from ``snr_db_range``, measured over the whole clip. The output is
    rescaled if it would clip. It is deterministic for a given ``rng`` state; this is a cheap
    stand-in for real noise and RIR corpora, not a replacement.

    Args:
        samples: float mono samples, shape (T,).
        sr: sample rate in Hz.
        rng: numpy random generator; its state alone decides the augmentation.
        snr_db_range: range of signal-to-noise ratios in dB; ``(x, x)`` for a fixed SNR.
        reverb_prob: probability of adding reverberation.

    Returns:
        float32 samples, shape (T,).
    """
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"augment expects mono samples of shape (T,), got {x.shape}")
    lo, hi = snr_db_range
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
        raise ValueError(f"augment: snr_db_range must be finite (lo, hi) with lo <= hi, "
                         f"got {snr_db_range}")
    power = float(np.mean(x.astype(np.float64) ** 2)) if x.size else 0.0
    if power == 0.0:
        return x.copy()
    if rng.random() < reverb_prob:
        rt60 = rng.uniform(0.15, 0.6)
        t = np.arange(max(1, int(rt60 * sr))) / sr
        rir = rng.standard_normal(t.size) * np.exp(-np.log(1000.0) * t / rt60)  # -60 dB at rt60
        rir[0] = 1.0 / rng.uniform(0.1, 0.5)  # direct path, louder than the first reflections
        wet = torchaudio.functional.fftconvolve(torch.from_numpy(x), torch.from_numpy(rir).float())
        x = wet[: x.size].numpy()
        x *= np.sqrt(power / max(float(np.mean(x.astype(np.float64) ** 2)), 1e-20))
    if rng.random() < 0.5:
        noise = rng.standard_normal(x.size)
    else:  # pink: shape white noise by 1/sqrt(f) so power falls 3 dB per octave
        spectrum = np.fft.rfft(rng.standard_normal(x.size))
        freqs = np.fft.rfftfreq(x.size)
        spectrum[1:] /= np.sqrt(freqs[1:])
        spectrum[0] = 0.0
        noise = np.fft.irfft(spectrum, n=x.size)
    snr_db = rng.uniform(*snr_db_range)
    noise *= np.sqrt(power / 10 ** (snr_db / 10) / max(float(np.mean(noise**2)), 1e-20))
    y = (x + noise).astype(np.float32)
    peak = float(np.abs(y).max())
    return y * (0.99 / peak) if peak > 0.99 else y


# --- Piper ----------------------------------------------------------------------------------

VOICE_KINDS = ("espeak", "piper")
_PIPER_SCALES = {"length_scale": (0.25, 4.0), "noise_scale": (0.0, 2.0),
                 "noise_w_scale": (0.0, 2.0)}


@dataclass(frozen=True)
class PiperVoice:
    """One Piper voice model and its synthesis settings (one *rendition* of the voice).

    Args:
        model: a catalogue voice (``"joe"`` or ``"piper-joe"``), or a user's ``.onnx`` voice
            file (its ``.onnx.json`` beside it) or a dir holding exactly one.
        length_scale: phoneme durations x this (> 1 is slower); None: the model's own setting
            (its config's ``inference``; 1.0 for joe).
        noise_scale: generator noise (voice quality variation); None: the model's (0.667).
        noise_w_scale: phoneme-duration noise (rhythm variation); None: the model's (0.8).

    >>> PiperVoice("joe").id, PiperVoice("joe", 1.1, 0.5, 0.7).id
    ('piper-joe', 'piper-joe_l1.10_n0.50_w0.70')
    """

    kind: ClassVar[str] = "piper"
    model: str = "joe"
    length_scale: float | None = None
    noise_scale: float | None = None
    noise_w_scale: float | None = None

    def __post_init__(self) -> None:
        if not self.model or "," in self.model:
            raise ValueError(f"bad piper voice model {self.model!r}")
        for field, (lo, hi) in _PIPER_SCALES.items():
            value = getattr(self, field)
            if value is not None and not lo <= value <= hi:
                raise ValueError(f"PiperVoice.{field}={value} is outside [{lo}, {hi}]")

    @property
    def label(self) -> str:
        """``piper:joe``: the voice without its settings."""
        return f"piper:{self.model}"

    @property
    def id(self) -> str:
        """Filename-safe id: ``piper-<name>`` plus ``_l<length>_n<noise>_w<noise_w>`` if set.

        The name is the model's with every character outside ``[A-Za-z0-9.]`` made ``.``, so
        ``-`` only ever follows a whole id and ``<id>-<utt>`` ids stay grouped by voice.
        """
        is_path = "/" in self.model or self.model.endswith(".onnx")
        name = Path(self.model).name.removesuffix(".onnx") if is_path else \
            self.model.removeprefix("piper-")
        name = re.sub(r"[^A-Za-z0-9.]", ".", name)
        scales = (self.length_scale, self.noise_scale, self.noise_w_scale)
        if all(v is None for v in scales):
            return f"piper-{name}"
        parts = ("d" if v is None else f"{v:.2f}" for v in scales)
        return f"piper-{name}_" + "_".join(f"{k}{v}" for k, v in zip("lnw", parts, strict=True))


def piper_voices() -> list[str]:
    """Names of the catalogue's Piper voices, as ``parse_voice`` takes them (``joe``)."""
    from speechlm.core import catalogue

    return [n.removeprefix("piper-") for n in catalogue.names("tts") if n.startswith("piper-")]


def piper_model_files(model: str) -> tuple[Path, Path]:
    """``(onnx file, json config)`` of a Piper voice (catalogue name, file or dir).

    Raises:
        ValueError: neither a catalogue voice nor an existing path (lists the voices).
        speechlm.core.catalogue.ModelNotInstalled: the voice's package is missing.
        FileNotFoundError: the config beside a user's ``.onnx`` is missing.
    """
    from speechlm.core import catalogue

    name = model if model.startswith("piper-") else f"piper-{model}"
    if name in catalogue.MODELS and not os.path.exists(model):
        card = catalogue.get(name)
        root = catalogue.locate(name)
        return root / card.extra["onnx"], root / card.extra["config"]
    path = Path(model)
    if path.is_dir():
        onnx = sorted(path.glob("*.onnx"))
        if len(onnx) != 1:
            raise ValueError(f"piper voice dir {path} must hold one .onnx file, found "
                             f"{[p.name for p in onnx]}")
        path = onnx[0]
    if not path.is_file():
        raise ValueError(f"unknown piper voice {model!r}: not a catalogue voice "
                         f"({', '.join(piper_voices())}) nor an .onnx file or dir")
    config = path.with_name(path.name + ".json")
    if not config.is_file():
        raise FileNotFoundError(f"piper voice {path}: its config {config} is missing")
    return path, config


def parse_voice(spec: str) -> EspeakVoice | PiperVoice:
    """Read a ``KIND:NAME`` voice: ``piper:joe``, ``espeak:en-us``, ``espeak:en-us+m3``.

    Espeak voices get the default prosody (175 wpm, pitch 50); names are checked on use.

    Raises:
        ValueError: no or unknown kind (the message lists the kinds), or an empty name.
    """
    kind, sep, name = spec.strip().partition(":")
    if not sep or kind not in VOICE_KINDS or not name:
        raise ValueError(f"bad voice {spec!r}: expected KIND:NAME with KIND one of "
                         f"{', '.join(VOICE_KINDS)} (e.g. piper:joe, espeak:en-us+m3)")
    if kind == "piper":
        return PiperVoice(name)
    voice, plus, variant = name.partition("+")
    return EspeakVoice(voice, variant if plus else None)  # "en-us+" is refused, not dropped


def piper_renditions(
    voice: PiperVoice,
    n: int,
    seed: int,
    *,
    length_range: tuple[float, float] = (0.85, 1.2),
    noise_range: tuple[float, float] = (0.4, 0.9),
    noise_w_range: tuple[float, float] = (0.5, 1.0),
) -> list[PiperVoice]:
    """``voice`` itself and ``n - 1`` variations of its scales (two decimals), reproducibly.

    The ranges stay near Piper's defaults (1.0, 0.667, 0.8), where speech stays clear: slower
    or faster by up to ~20%, flatter or livelier.

    Raises:
        ValueError: ``n < 1`` or ranges too narrow for ``n`` distinct renditions.
    """
    if n < 1:
        raise ValueError(f"need at least one rendition, got {n}")
    rng = np.random.default_rng([seed, zlib.crc32(voice.model.encode())])
    out, seen = [voice], {voice.id}
    for _ in range(100 * n):
        if len(out) == n:
            return out
        ls, ns, nw = (round(float(rng.uniform(*r)), 2)
                      for r in (length_range, noise_range, noise_w_range))
        v = PiperVoice(voice.model, ls, ns, nw)
        if v.id not in seen:
            seen.add(v.id)
            out.append(v)
    raise ValueError(f"could not draw {n} distinct renditions of {voice.label} from the ranges")


class PiperSynthesizer:
    """Text to speech with one Piper voice model, resampled to ``sample_rate``.

    Piper's VITS graph draws its noise inside ONNX Runtime, which seeds it only when the
    session is made, from a process-wide seed (``onnxruntime.set_seed``; there is no
    per-session one). We set it to ``seed`` just before, so a fresh process making the same
    calls in the same order gives the same audio (as with espeak); one call repeated later
    differs a little.

    Args:
        model: see ``PiperVoice.model``.
        sample_rate: output rate in Hz; Piper medium voices produce 22050 Hz.
        num_threads: ONNX Runtime threads (its default, one per core, only spins on shared
            cores).
        seed: see above.
        lead_silence: seconds of silence put before the speech. Piper starts speaking within
            5 ms (espeak after ~50 ms); so abrupt an onset made Whisper tiny drop the first word
            of a fast rendition, which 0.15 s of silence fixed.
    """

    def __init__(self, model: str = "joe", sample_rate: int = 16000, *, num_threads: int = 1,
                 seed: int = 0, lead_silence: float = 0.15) -> None:
        import onnxruntime
        from piper import PiperVoice as _Piper
        from piper.config import PiperConfig

        if sample_rate <= 0 or lead_silence < 0:
            raise ValueError(f"need sample_rate > 0 and lead_silence >= 0, got {sample_rate} "
                             f"and {lead_silence}")
        self.lead_silence = lead_silence
        onnx, config = self._files = piper_model_files(model)
        self.model, self.sample_rate = model, sample_rate
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = num_threads
        onnxruntime.set_seed(seed)
        # PiperVoice.load does the same, but gives no way to set threads.
        self._voice = _Piper(
            config=PiperConfig.from_dict(json.loads(config.read_text(encoding="utf-8"))),
            session=onnxruntime.InferenceSession(str(onnx), sess_options=opts,
                                                 providers=["CPUExecutionProvider"]))
        self._lock = threading.Lock()  # one run at a time keeps the noise sequence ordered
        self._resample = None
        if sample_rate != self.native_sample_rate:
            self._resample = torchaudio.transforms.Resample(self.native_sample_rate, sample_rate)

    @property
    def native_sample_rate(self) -> int:
        """The model's own output rate (22050 Hz for medium voices)."""
        return int(self._voice.config.sample_rate)

    def synthesize(self, text: str, voice: PiperVoice) -> tuple[np.ndarray, int]:
        """Speak ``text``; returns ``(samples, sample_rate)``, float32 mono in [-1, 1].

        Piper speaks each sentence separately; they are joined without a pause. Each is
        normalised to a 0.9 peak, leaving headroom for the resampler's ringing.

        Raises:
            ValueError: ``voice`` is of another model than this synthesiser's.
            SynthesisError: Piper gave no audio (e.g. empty text).
        """
        from piper import SynthesisConfig

        if voice.model != self.model and piper_model_files(voice.model) != self._files:
            raise ValueError(f"voice {voice.id} is not of this synthesiser's model {self.model!r}")
        cfg = SynthesisConfig(length_scale=voice.length_scale, noise_scale=voice.noise_scale,
                              noise_w_scale=voice.noise_w_scale, volume=0.9)
        with self._lock:
            chunks = [c.audio_float_array for c in self._voice.synthesize(text, syn_config=cfg)]
        if not any(c.any() for c in chunks):
            raise SynthesisError(f"piper gave no audio for text {text!r} with voice {voice.id}")
        lead = np.zeros(round(self.lead_silence * self.native_sample_rate), np.float32)
        samples = np.concatenate([lead, *chunks])
        if self._resample is not None:
            with torch.no_grad():
                samples = self._resample(torch.from_numpy(samples)).numpy()
            np.clip(samples, -1.0, 1.0, out=samples)
        return samples.astype(np.float32, copy=False), self.sample_rate


class Synthesizer:
    """Speaks with voices of any kind: espeak through the shared engine, each Piper model
    loaded once on first use.

    Args:
        sample_rate: output rate in Hz.
        num_threads: ONNX Runtime threads per Piper model.
        seed: seed of Piper's noise (see ``PiperSynthesizer``).

    >>> synth = Synthesizer(16000)
    >>> synth.synthesize("seven", parse_voice("espeak:en-us"))[1]
    16000
    """

    def __init__(self, sample_rate: int = 16000, *, num_threads: int = 1, seed: int = 0) -> None:
        self.espeak = EspeakSynthesizer(sample_rate)
        self.sample_rate, self.num_threads, self.seed = sample_rate, num_threads, seed
        self._piper: dict[str, PiperSynthesizer] = {}  # by PiperVoice.model

    def synthesize(self, text: str, voice: EspeakVoice | PiperVoice) -> tuple[np.ndarray, int]:
        """``(samples, sample_rate)`` as the voice kind's synthesiser gives them."""
        if isinstance(voice, EspeakVoice):
            return self.espeak.synthesize(text, voice)
        if not isinstance(voice, PiperVoice):
            raise TypeError(f"not a voice: {voice!r} (kinds: {', '.join(VOICE_KINDS)})")
        if voice.model not in self._piper:
            self._piper[voice.model] = PiperSynthesizer(voice.model, self.sample_rate,
                                                        num_threads=self.num_threads,
                                                        seed=self.seed)
        return self._piper[voice.model].synthesize(text, voice)
