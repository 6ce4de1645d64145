"""Whisper encoder frames as ASR input features, in place of fbank.

A pretrained encoder gives frames that vary less across speakers than log-mels: an ESPnet
CTC/attention model trained on them (``speechlm train-asr`` with a feature config of
``type: whisper_encoder``) sees Whisper's representation of the audio, one 384-dim frame
(whisper-tiny) per 20 ms. The features are computed beforehand into Kaldi ark/scp files by
``speechlm compute-fbank --config conf/whisper_feats.yaml`` (cached on disk like fbank),
and the settings travel in the model dir's ``frontend.yaml`` under ``whisper_encoder``, so
``speechlm decode`` computes the same frames for new audio.

Window. Whisper's encoder was trained on 30 s windows (the log-mel padded with silence).
``window: utterance`` encodes only the utterance's own log-mel frames (an even number of
them; positions 0..T/2 of the positional table): for a 0.4 s digit it costs 1/80 of the
padded window (measured 0.03 s vs 2.3 s on this 2-core machine). ``window: padded`` encodes
the full padded 30 s window and keeps the frames that cover the utterance: Whisper's own
setting, but too slow here for thousands of training utterances. The two give different
frames (cosine 0.73 on one digit), so a model must be decoded with the window it was
trained with (the model dir records it).

>>> cfg = WhisperFeatureConfig.from_dict({"type": "whisper_encoder", "window": "utterance"})
>>> cfg.model, cfg.frame_shift_s
('whisper-tiny.en', 0.02)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

__all__ = ["TYPE", "WhisperFeatureConfig", "encoder_frames", "feature_config_from_dict",
           "frontend_entry"]

TYPE = "whisper_encoder"
_WINDOWS = ("utterance", "padded")
_MODELS: dict[tuple[str, str], object] = {}  # (model, compute_type) -> WhisperModel, per process


@dataclass(frozen=True)
class WhisperFeatureConfig:
    """Settings of Whisper encoder features (see the module docstring).

    Attributes:
        model: Catalogue name or CTranslate2 directory of a Whisper model.
        window: ``utterance`` (encode the utterance's frames only) or ``padded`` (the
            30 s window, cropped to the utterance afterwards).
        compute_type: CTranslate2 compute type of the encoder.
        threads: CPU threads of the encoder.
    """

    model: str = "whisper-tiny.en"
    window: str = "utterance"
    compute_type: str = "int8"
    threads: int = 1
    sample_rate = 16000  # Whisper's log-mel rate (class constant, not a setting)

    def __post_init__(self):
        if self.window not in _WINDOWS:
            raise ValueError(f"WhisperFeatureConfig: window must be one of {_WINDOWS}, "
                             f"got {self.window!r}")
        if self.threads < 1:
            raise ValueError(f"WhisperFeatureConfig: threads must be >= 1, got {self.threads}")

    @property
    def frame_shift_s(self) -> float:
        """Encoder frame shift (two 10 ms log-mel frames)."""
        return 0.02

    def to_dict(self) -> dict:
        """Plain dict of the settings, with ``type`` (the YAML form)."""
        return {"type": TYPE, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> WhisperFeatureConfig:
        """Build from a dict (``type`` optional); unknown keys are an error."""
        d = dict(d)
        if d.pop("type", TYPE) != TYPE:
            raise ValueError(f"WhisperFeatureConfig: type must be {TYPE!r}")
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"WhisperFeatureConfig: unknown option(s) {sorted(unknown)}")
        return cls(**d)

    def extract(self, samples: np.ndarray) -> np.ndarray:
        """(T, D) encoder frames of mono float samples at 16 kHz (T = 0 if too short)."""
        return encoder_frames(samples, self)


def _whisper(config: WhisperFeatureConfig):
    key = (config.model, config.compute_type)
    if key not in _MODELS:
        from speechlm.asr.whisper_asr import load_faster_whisper

        _MODELS[key] = load_faster_whisper(config.model, compute_type=config.compute_type,
                                           threads=config.threads)
    return _MODELS[key]


def encoder_frames(samples: np.ndarray, config: WhisperFeatureConfig) -> np.ndarray:
    """Whisper encoder output for one utterance: (T, D) float32, T = mel frames // 2.

    Args:
        samples: (N,) float32 signal at 16 kHz in [-1, 1].
        config: Model and window.

    Returns:
        (T, D) frames; (0, 0) when the signal is shorter than two log-mel frames.
    """
    import ctranslate2
    from faster_whisper.audio import pad_or_trim

    fw = _whisper(config)
    mel = fw.feature_extractor(np.asarray(samples, dtype=np.float32))  # (n_mels, n + 1)
    n = min(mel.shape[1] - 1, 3000) // 2 * 2  # faster-whisper appends one frame
    if n < 2:
        return np.zeros((0, 0), dtype=np.float32)
    x = pad_or_trim(mel) if config.window == "padded" else mel[:, :n]
    enc = fw.model.encode(ctranslate2.StorageView.from_array(
        np.ascontiguousarray(x[None], dtype=np.float32)))
    return np.array(enc, dtype=np.float32)[0, : n // 2]


def feature_config_from_dict(d: dict):
    """A feature config from its YAML form: ``type: whisper_encoder`` gives a
    :class:`WhisperFeatureConfig`, anything else a ``FbankConfig``."""
    from speechlm.data.features import FbankConfig

    if (d or {}).get("type") == TYPE:
        return WhisperFeatureConfig.from_dict(d)
    return FbankConfig.from_dict(d or {})


def frontend_entry(config) -> dict:
    """The model dir's ``frontend.yaml`` entry of a feature config."""
    if isinstance(config, WhisperFeatureConfig):
        return {TYPE: config.to_dict()}
    return {"fbank": config.to_dict()}
