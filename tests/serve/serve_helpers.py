"""Audio builders for the serving tests (a module name no other test folder uses)."""
from __future__ import annotations

import io

import numpy as np


def wav_bytes(samples: np.ndarray, sample_rate: int, subtype: str = "PCM_16",
              fmt: str = "WAV") -> bytes:
    """Encode ``samples`` ((T,) or (T, C) float) as an audio file in memory."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples, sample_rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def tone(seconds: float = 0.5, sample_rate: int = 16000, channels: int = 1,
         amplitude: float = 0.3) -> np.ndarray:
    """A 440 Hz tone, (T,) or (T, C)."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    x = (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return x if channels == 1 else np.stack([x] * channels, axis=1)
