"""Reading and writing audio named by Kaldi ``wav.scp`` entries.

An entry is either a file path or a shell command ending in ``|`` whose stdout is a
WAV stream (``sox x.flac -t wav - |``, ``cat x.wav |``). Every failure raises
:class:`AudioError` with one message that names the utterance and the file or
command, so a broken line in a 100k-line ``wav.scp`` is found without a debugger.

Commands are executed by ``/bin/sh`` (Kaldi's convention): a ``wav.scp`` is code, so read
only data dirs you trust, or refuse commands (``CommandLimits(allow=False)``,
``speechlm validate-data-dir --no-commands``). A command runs in its own process group
with a wall-clock timeout and a cap on the bytes read from its stdout
(:class:`CommandLimits`); past either, the whole group is killed.
"""

from __future__ import annotations

import io
import os
import selectors
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as taf

__all__ = ["AudioError", "CommandLimits", "audio_info", "is_pipe", "load_audio", "read_audio",
           "resample", "write_wav"]

# How much of a failing command's stderr goes into the error message.
_STDERR_TAIL_CHARS = 500
_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class CommandLimits:
    """How piped ``wav.scp`` entries (``cmd |``) are run.

    Args:
        allow: run commands at all; False refuses each with an error naming the utterance
            (for data dirs you did not write).
        timeout_s: wall-clock seconds a command may take; then its process group is killed.
        max_bytes: most bytes read from its stdout (1 GiB is ~9 h of 16 kHz 16-bit mono);
            a command writing more is killed, so memory stays bounded.

    >>> CommandLimits(timeout_s=30).max_bytes == 1 << 30
    True
    """

    allow: bool = True
    timeout_s: float = 300.0
    max_bytes: int = 1 << 30

    def __post_init__(self) -> None:
        if not self.timeout_s > 0 or self.max_bytes < 1:
            raise ValueError(f"need timeout_s > 0 and max_bytes >= 1, got {self.timeout_s}, "
                             f"{self.max_bytes}")


DEFAULT_COMMAND_LIMITS = CommandLimits()


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


def _run_pipe(entry: str, utt: str | None, limits: CommandLimits) -> io.BytesIO:
    """The command's stdout, read as it comes, within ``limits``."""
    if not limits.allow:
        raise _fail(entry, utt, "wav.scp commands are refused here (they would be run by "
                                "the shell); give a file path, or allow commands")
    cmd = entry.rstrip()[:-1].strip()
    # shell=True is the point: wav.scp pipes are shell pipelines written by recipes. Its own
    # process group, so a timeout or the cap kills the whole pipeline, not only the shell.
    proc = subprocess.Popen(cmd, shell=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    stderr_tail = bytearray()

    def drain_stderr():  # read all of it (a full pipe would block the command), keep the end
        while chunk := proc.stderr.read1(_READ_CHUNK):
            stderr_tail.extend(chunk)
            del stderr_tail[:-_STDERR_TAIL_CHARS * 4]

    reader = threading.Thread(target=drain_stderr, daemon=True)
    reader.start()
    out = io.BytesIO()
    deadline = time.monotonic() + limits.timeout_s
    timed_out = f"command did not finish within {limits.timeout_s:g} s and was killed " \
                "(raise the command timeout if it is only slow)"
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            fd = proc.stdout.fileno()
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _fail(entry, utt, timed_out)
                if not sel.select(left):
                    continue
                chunk = os.read(fd, _READ_CHUNK)
                if not chunk:
                    break
                if out.tell() + len(chunk) > limits.max_bytes:
                    raise _fail(entry, utt, f"command wrote more than {limits.max_bytes} bytes "
                                            "and was killed (raise the output cap if the audio "
                                            "is really that long)")
                out.write(chunk)
        try:
            rc = proc.wait(timeout=max(deadline - time.monotonic(), 0.001))
        except subprocess.TimeoutExpired:
            raise _fail(entry, utt, timed_out) from None
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        reader.join(1.0)  # a grandchild may still hold stderr open: do not wait for it
        proc.stdout.close()
    if rc != 0:
        tail = stderr_tail.decode(errors="replace").strip()[-_STDERR_TAIL_CHARS:]
        reason = f"command exited with status {rc}"
        raise _fail(entry, utt, reason + (f"; stderr: {tail}" if tail else ""))
    if out.tell() == 0:
        raise _fail(entry, utt, "command wrote no audio to stdout")
    out.seek(0)
    return out


def _open(entry: str, utt: str | None, limits: CommandLimits) -> str | io.BytesIO:
    """Return something soundfile can open, raising AudioError for missing files."""
    if is_pipe(entry):
        return _run_pipe(entry, utt, limits)
    if not os.path.isfile(entry):
        raise _fail(entry, utt, "no such file")
    if os.path.getsize(entry) == 0:
        raise _fail(entry, utt, "file is empty (0 bytes)")
    return entry


def audio_info(entry: str, utt: str | None = None, *,
               commands: CommandLimits = DEFAULT_COMMAND_LIMITS) -> tuple[int, int, int]:
    """Return ``(sample_rate, num_samples, num_channels)`` of a ``wav.scp`` entry.

    Plain files read only the header (microseconds); piped commands have to run.

    Args:
        entry: A file path, or a shell command ending in ``|``.
        utt: Utterance (or recording) id, used in error messages.
        commands: whether and how a command may run.

    Returns:
        Sample rate in Hz, number of samples per channel, number of channels.

    Raises:
        AudioError: Missing, unreadable or empty audio, or a failing command (one past
            its timeout or output cap, or refused).
    """
    src = _open(entry, utt, commands)
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


def load_audio(entry: str, *, utt: str | None = None,
               commands: CommandLimits = DEFAULT_COMMAND_LIMITS) -> tuple[np.ndarray, int]:
    """Read a ``wav.scp`` entry at its own rate: ``(samples, sample_rate)``.

    Like :func:`read_audio` with ``target_sample_rate=None``, but also returns the
    rate. Samples are (T,) float32 in [-1, 1]; several channels are averaged.
    """
    src = _open(entry, utt, commands)
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
    commands: CommandLimits = DEFAULT_COMMAND_LIMITS,
) -> np.ndarray:
    """Read a ``wav.scp`` entry as a mono float32 signal in [-1, 1].

    Args:
        entry: A file path, or a shell command ending in ``|`` that writes audio
            (normally WAV) to stdout.
        utt: Utterance (or recording) id, used in error messages.
        target_sample_rate: Resample to this rate in Hz; ``None`` keeps the file's.
        expected_sample_rate: If given, a file at any other rate is an error
            (checked before resampling), for corpora that must be uniform.
        commands: whether and how a piped entry's command may run (timeout, output cap).

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
    samples, sr = load_audio(entry, utt=utt, commands=commands)
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
