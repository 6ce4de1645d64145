"""Reading and writing audio named by Kaldi ``wav.scp`` entries.

An entry is either a file path or a shell command ending in ``|`` whose stdout is a
WAV stream (``sox x.flac -t wav - |``, ``cat x.wav |``). Every failure raises
:class:`AudioError` with one message that names the utterance and the file or
command, so a broken line in a 100k-line ``wav.scp`` is found without a debugger.
"""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as taf

__all__ = ["AudioError", "audio_info", "is_pipe", "load_audio", "read_audio", "resample",
           "write_wav"]

# How much of a failing command's stderr goes into the error message.
_STDERR_TAIL_CHARS = 500


class AudioError(ValueError):
    """Audio could not be read, or is not what the caller expected.

    Attributes:
        entry: The ``wav.scp`` entry (path or command).
        reason: The problem alone, without the utterance and entry, for callers
            (like the data-dir validator) that build their own message.
    """

    def __init__(self, message: str, *, entry: str = "", reason: str = ""):
        super().__init__(message)
        self.entry = entry
        self.reason = reason or message


def is_pipe(entry: str) -> bool:
    """True for a piped ``wav.scp`` entry such as ``"sox a.flac -t wav - |"``."""
    return entry.rstrip().endswith("|")


def _fail(entry: str, utt: str | None, reason: str) -> AudioError:
    what = "command" if is_pipe(entry) else "file"
    where = f"utterance {utt!r}, {what} {entry!r}" if utt is not None else f"{what} {entry!r}"
    return AudioError(f"{where}: {reason}", entry=entry, reason=reason)


def _run_pipe(entry: str, utt: str | None) -> bytes:
    cmd = entry.rstrip()[:-1].strip()
    # shell=True is the point: wav.scp pipes are shell pipelines written by recipes.
    proc = subprocess.run(cmd, shell=True, capture_output=True, check=False)
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip()[-_STDERR_TAIL_CHARS:]
        reason = f"command exited with status {proc.returncode}"
        raise _fail(entry, utt, reason + (f"; stderr: {tail}" if tail else ""))
    if not proc.stdout:
        raise _fail(entry, utt, "command wrote no audio to stdout")
    return proc.stdout


def _open(entry: str, utt: str | None) -> str | io.BytesIO:
    """Return something soundfile can open, raising AudioError for missing files."""
    if is_pipe(entry):
        return io.BytesIO(_run_pipe(entry, utt))
    if not os.path.isfile(entry):
        raise _fail(entry, utt, "no such file")
    if os.path.getsize(entry) == 0:
        raise _fail(entry, utt, "file is empty (0 bytes)")
    return entry


def audio_info(entry: str, utt: str | None = None) -> tuple[int, int, int]:
    """Return ``(sample_rate, num_samples, num_channels)`` of a ``wav.scp`` entry.

    Plain files read only the header (microseconds); piped commands have to run.

    Args:
        entry: A file path, or a shell command ending in ``|``.
        utt: Utterance (or recording) id, used in error messages.

    Returns:
        Sample rate in Hz, number of samples per channel, number of channels.

    Raises:
        AudioError: Missing, unreadable or empty audio, or a failing command.
    """
    src = _open(entry, utt)
    try:
        info = sf.info(src)
    except (sf.SoundFileError, RuntimeError) as e:
        raise _fail(entry, utt, f"not readable as audio ({e})") from None
    if info.frames <= 0:
        raise _fail(entry, utt, "audio has zero length")
    return int(info.samplerate), int(info.frames), int(info.channels)


def resample(samples: np.ndarray, orig_sample_rate: int, new_sample_rate: int) -> np.ndarray:
    """Band-limited resampling (torchaudio's windowed sinc) of a 1-D float signal.

    Args:
        samples: (T,) float32 signal.
        orig_sample_rate: Rate the signal is treated as having, in Hz.
        new_sample_rate: Output rate in Hz.

    Returns:
        (T * new / orig,) float32 signal.
    """
    if orig_sample_rate == new_sample_rate:
        return samples
    out = taf.resample(torch.from_numpy(np.ascontiguousarray(samples)), orig_sample_rate,
                       new_sample_rate)
    return out.numpy().astype(np.float32, copy=False)


def load_audio(entry: str, *, utt: str | None = None) -> tuple[np.ndarray, int]:
    """Read a ``wav.scp`` entry at its own rate: ``(samples, sample_rate)``.

    Like :func:`read_audio` with ``target_sample_rate=None``, but also returns the
    rate. Samples are (T,) float32 in [-1, 1]; several channels are averaged.
    """
    src = _open(entry, utt)
    try:
        data, sr = sf.read(src, dtype="float32", always_2d=True)  # (T, C)
    except (sf.SoundFileError, RuntimeError) as e:
        raise _fail(entry, utt, f"not readable as audio ({e})") from None
    if data.shape[0] == 0:
        raise _fail(entry, utt, "audio has zero length")
    samples = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)
    return np.ascontiguousarray(samples, dtype=np.float32), int(sr)


def read_audio(
    entry: str,
    *,
    utt: str | None = None,
    target_sample_rate: int | None = 16000,
    expected_sample_rate: int | None = None,
) -> np.ndarray:
    """Read a ``wav.scp`` entry as a mono float32 signal in [-1, 1].

    Args:
        entry: A file path, or a shell command ending in ``|`` that writes audio
            (normally WAV) to stdout.
        utt: Utterance (or recording) id, used in error messages.
        target_sample_rate: Resample to this rate in Hz; ``None`` keeps the file's.
        expected_sample_rate: If given, a file at any other rate is an error
            (checked before resampling), for corpora that must be uniform.

    Returns:
        (T,) float32 samples at ``target_sample_rate``. Several channels are averaged.

    Raises:
        AudioError: Missing, unreadable, zero-length audio, a failing command, or an
            unexpected sample rate. The message names ``utt`` and the entry.

    >>> import tempfile, os, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> write_wav(path, np.zeros(8000, dtype=np.float32), 8000)
    >>> read_audio(path, target_sample_rate=16000).shape
    (16000,)
    """
    samples, sr = load_audio(entry, utt=utt)
    if expected_sample_rate is not None and sr != expected_sample_rate:
        reason = f"sample rate is {sr} Hz, expected {expected_sample_rate} Hz"
        raise _fail(entry, utt, reason)
    if target_sample_rate is not None:
        samples = resample(samples, sr, target_sample_rate)
    return samples


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write a 16-bit PCM WAV file atomically (a killed writer leaves no partial file).

    Args:
        path: Output path; parent folders are created.
        samples: (T,) or (T, C) float signal in [-1, 1]; values outside are clipped
            rather than wrapped around by the int16 conversion.
        sample_rate: Rate in Hz.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clipped = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 32767 / 32768)
    # Encode in memory: writing to a path makes libsndfile fsync on close, which
    # measured ~4 ms per file here (10 s for 2,500 short WAVs).
    buf = io.BytesIO()
    sf.write(buf, clipped, int(sample_rate), subtype="PCM_16", format="WAV")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buf.getbuffer())
    os.replace(tmp, path)
