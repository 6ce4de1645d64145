"""Builders of small, real test data for anyone's tests (like lhotse's dummies).

>>> import tempfile
>>> from speechlm.data.kaldi_dir import validate_data_dir
>>> d = make_data_dir(tempfile.mkdtemp(), 4)
>>> validate_data_dir(d, expected_sample_rate=16000)  # no problems, no warnings
[]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from speechlm.data.audio import write_wav
from speechlm.data.kaldi_dir import KaldiDataDir, write_data_dir

__all__ = ["WORDS", "make_data_dir", "make_wav", "tone"]

# Transcripts are digit words, like FSDD / yesno: a tiny, closed vocabulary.
WORDS = ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE")


def tone(seconds: float, sample_rate: int, freq: float | None = 440.0, *,
         amplitude: float = 0.5, seed: int = 0) -> np.ndarray:
    """A (T,) float32 sine at ``freq`` Hz, or white noise when ``freq`` is None."""
    n = round(seconds * sample_rate)
    if freq is None:
        rng = np.random.default_rng(seed)
        return (amplitude * rng.uniform(-1, 1, n)).astype(np.float32)
    t = np.arange(n) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_wav(path: str | Path, seconds: float = 1.0, sample_rate: int = 16000,
             freq: float | None = 440.0, *, num_channels: int = 1, seed: int = 0) -> Path:
    """Write a 16-bit WAV holding a tone (or noise when ``freq`` is None).

    Args:
        path: Output file; parent folders are created.
        seconds: Duration.
        sample_rate: Rate in Hz.
        freq: Tone frequency in Hz, or None for white noise.
        num_channels: Channels; each is the same signal, scaled by 1/(channel+1).
        seed: Noise seed.

    Returns:
        ``Path(path)``.
    """
    x = tone(seconds, sample_rate, freq, seed=seed)
    if num_channels > 1:
        x = np.stack([x / (c + 1) for c in range(num_channels)], axis=1)  # (T, C)
    write_wav(path, x, sample_rate)
    return Path(path)


def make_data_dir(
    root: str | Path,
    n_utts: int = 4,
    *,
    n_speakers: int = 2,
    seconds: float = 0.5,
    sample_rate: int = 16000,
    segments: bool = False,
    piped: bool = False,
    utt2dur: bool = False,
    extra: dict[str, list[str]] | None = None,
) -> Path:
    """Write a small valid Kaldi data dir with real WAV files under ``root/wav``.

    Utterance ids are ``spk{s}-utt{i:04d}`` (speaker ids prefix utterance ids, as
    Kaldi wants); each utterance is a tone at its own frequency, its transcript two
    or three digit words.

    Args:
        root: Data dir to create (WAVs go to ``root/wav``).
        n_utts: Number of utterances.
        n_speakers: Speakers, assigned round-robin.
        seconds: Duration of each utterance; utterance i lasts
            ``seconds + 0.05 * (i % 3)`` so lengths differ.
        sample_rate: Rate of the WAVs in Hz.
        segments: Put all utterances into one recording per speaker with a
            ``segments`` file (0.1 s gaps between utterances).
        piped: Write ``wav.scp`` entries as ``cat path |`` commands.
        utt2dur: Also write ``utt2dur``.
        extra: Extra per-utterance files, e.g. ``{"utt2intent": [...]}``, one value per
            utterance in id order.

    Returns:
        ``Path(root)``.
    """
    root = Path(root)
    wav_dir = root.resolve() / "wav"  # absolute, so wav.scp works from any cwd
    utts, spk, dur = [], {}, {}
    for i in range(n_utts):
        s = i % n_speakers
        utt = f"spk{s}-utt{i:04d}"
        utts.append(utt)
        spk[utt] = f"spk{s}"
        dur[utt] = seconds + 0.05 * (i % 3)
    utts.sort()
    text = {u: " ".join(WORDS[(i * 7 + k) % 10] for k in range(2 + i % 2))
            for i, u in enumerate(utts)}
    freq = {u: 200.0 + 100.0 * (i % 8) for i, u in enumerate(utts)}

    def entry(path: Path) -> str:
        return f"cat {path} |" if piped else str(path)

    wav_scp, segs = {}, None
    if segments:
        segs = {}
        for s in sorted(set(spk.values())):
            rec, pieces, t = f"{s}-rec", [], 0.0
            for u in (u for u in utts if spk[u] == s):
                gap = np.zeros(int(0.1 * sample_rate), dtype=np.float32)
                pieces += [gap, tone(dur[u], sample_rate, freq[u])]
                t += 0.1
                segs[u] = (rec, round(t, 6), round(t + dur[u], 6))
                t += dur[u]
            write_wav(wav_dir / f"{rec}.wav", np.concatenate(pieces), sample_rate)
            wav_scp[rec] = entry(wav_dir / f"{rec}.wav")
    else:
        for u in utts:
            wav_scp[u] = entry(make_wav(wav_dir / f"{u}.wav", dur[u], sample_rate, freq[u]))
    d = KaldiDataDir(
        wav_scp=wav_scp, utt2spk=spk, text=text, segments=segs,
        utt2dur=dict(dur) if utt2dur else None,
        extra={name: dict(zip(utts, values, strict=True))
               for name, values in (extra or {}).items()},
    )
    write_data_dir(d, root)
    return root
