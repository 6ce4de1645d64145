"""Speed perturbation and combining data dirs, following Kaldi/ESPnet conventions.

``speed_perturb_data_dir(src, dst, 0.9, ...)`` is Kaldi's
``utils/data/perturb_data_dir_speed.sh 0.9``: utterance, speaker and recording ids
get the prefix ``sp0.9-``, segment times are divided by the factor, ``utt2uniq``
maps each new utterance to its source (so train/dev splits can keep copies of one
utterance together). The audio is written as WAV files instead of ``sox speed``
pipes, so nothing outside Python is needed and the work is done once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from speechlm.core.hashing import dir_digest
from speechlm.data.audio import audio_info, load_audio, resample, write_wav
from speechlm.data.kaldi_dir import DataDirError, KaldiDataDir, read_data_dir, write_data_dir

__all__ = ["combine_data_dirs", "speed_perturb_data_dir"]

log = logging.getLogger(__name__)
_MARKER = ".perturb.done"
# Extras that describe the source audio's length: wrong after a speed change.
_DROPPED = ("utt2num_frames",)


def speed_perturb_data_dir(src_dir: str | Path, dst_dir: str | Path, factor: float, *,
                           wav_dir: str | Path, target_sample_rate: int = 16000,
                           volume_range: tuple[float, float] | None = None) -> None:
    """Write a speed-perturbed copy of a data dir and its audio.

    The speed change is the resampling trick behind ``sox speed``: the signal is
    treated as recorded at ``sample_rate * factor`` and resampled to
    ``target_sample_rate``, so duration is divided by ``factor`` and pitch moves
    with it. With ``factor == 1.0`` ids keep no prefix (ESPnet's ``asr.sh`` uses the
    original dir) and the dir is copied as is when its audio is already at
    ``target_sample_rate``; otherwise the audio is resampled, so a combined
    ``0.9 1.0 1.1`` dir has one sample rate.

    A finished ``dst_dir`` holds a marker with the arguments and a hash of the
    source dir's files; a rerun that matches it returns at once, anything else
    redoes the work.

    Args:
        src_dir: Source data dir.
        dst_dir: Output data dir.
        factor: Speed factor, e.g. 0.9 (slower, longer) or 1.1.
        wav_dir: Folder for the new WAV files (``<recording id>.wav``).
        target_sample_rate: Rate of the written WAVs in Hz.
        volume_range: Also scale each recording by a gain drawn log-uniformly from
            ``(low, high)`` (Kaldi's ``perturb_data_dir_volume.sh`` uses 0.125-2), kept
            below clipping. Global CMVN does not remove a recording's level, so this is
            what teaches the model that loudness carries no meaning. The gain is
            seeded by the recording id and factor: reruns write the same audio.

    Raises:
        ValueError: ``factor`` is not positive.
        AudioError: A source recording cannot be read.
    """
    if factor <= 0:
        raise ValueError(f"speed factor must be positive, got {factor}")
    if volume_range is not None and not 0 < volume_range[0] <= volume_range[1]:
        raise ValueError(f"volume_range must be 0 < low <= high, got {volume_range}")
    src, dst, wav_dir = Path(src_dir), Path(dst_dir), Path(wav_dir)
    stamp = json.dumps({"src": str(src.resolve()), "factor": factor,
                        "target_sample_rate": target_sample_rate,
                        "wav_dir": str(wav_dir.resolve()), "src_files": dir_digest(src),
                        "volume_range": volume_range},
                       sort_keys=True)
    if (dst / _MARKER).is_file() and (dst / _MARKER).read_text() == stamp:
        return
    (dst / _MARKER).unlink(missing_ok=True)
    d = read_data_dir(src)
    if factor == 1.0 and volume_range is None and all(audio_info(e, r)[0] == target_sample_rate
                             for r, e in d.wav_scp.items()):
        write_data_dir(d, dst)
        (dst / _MARKER).write_text(stamp)
        return

    pre = "" if factor == 1.0 else f"sp{factor:g}-"  # Kaldi's sp0.9-, sp1.1-
    wav_scp, rec_dur = {}, {}
    for rec, entry in d.wav_scp.items():
        if os.sep in rec:
            raise ValueError(f"recording id {rec!r} contains {os.sep!r}; cannot name a file")
        x, sr = load_audio(entry, utt=rec)
        # Pretend the samples were taken at sr * factor, then resample.
        y = resample(x, round(sr * factor), target_sample_rate)
        if volume_range is not None:
            y = y * _gain(f"{rec} {factor:g}", volume_range, peak=float(np.abs(y).max()))
        path = (wav_dir / f"{pre}{rec}.wav").resolve()
        write_wav(path, y, target_sample_rate)
        wav_scp[pre + rec] = str(path)
        rec_dur[pre + rec] = len(y) / target_sample_rate

    def keys(m: dict) -> dict:
        return {pre + k: v for k, v in m.items()}

    segments = None
    if d.segments is not None:
        segments = {pre + u: (pre + r, s / factor, e / factor)
                    for u, (r, s, e) in d.segments.items()}
        utt2dur = {u: e - s for u, (_, s, e) in segments.items()}
    else:
        utt2dur = dict(rec_dur)
    extra = {n: keys(m) for n, m in d.extra.items() if n not in _DROPPED}
    if pre:
        uniq = d.extra.get("utt2uniq", {})
        extra["utt2uniq"] = {pre + u: uniq.get(u, u) for u in d.utt2spk}
    write_data_dir(KaldiDataDir(
        wav_scp=wav_scp, utt2spk={pre + u: pre + s for u, s in d.utt2spk.items()},
        text=keys(d.text), segments=segments, utt2dur=utt2dur, extra=extra), dst)
    (dst / _MARKER).write_text(stamp)


def combine_data_dirs(dst: str | Path, srcs: list[str | Path]) -> None:
    """Join data dirs into ``dst``, like Kaldi's ``utils/combine_data.sh``.

    Extra ``utt2*`` files and ``utt2dur`` are kept only if every source has them
    (Kaldi's rule). If some sources have ``segments`` and others do not, the
    others get whole-recording segments (durations from ``utt2dur`` or the audio).

    Args:
        dst: Output data dir.
        srcs: Source data dirs.

    Raises:
        ValueError: ``srcs`` is empty.
        DataDirError: An utterance id occurs in two sources, or a recording id
            occurs twice with different audio; the message names both dirs.
    """
    if not srcs:
        raise ValueError("combine_data_dirs: no source dirs")
    dirs = [(Path(s), read_data_dir(s)) for s in srcs]
    problems: list[str] = []
    owner: dict[str, Path] = {}
    wav_scp: dict[str, str] = {}
    for path, d in dirs:
        for utt in d.utt2spk:
            if utt in owner:
                problems.append(f"{path / 'utt2spk'}: utterance {utt!r} is also in "
                                f"{owner[utt] / 'utt2spk'}")
            owner.setdefault(utt, path)
        for rec, entry in d.wav_scp.items():
            if wav_scp.setdefault(rec, entry) != entry:
                problems.append(f"{path / 'wav.scp'}: recording {rec!r} is also in another "
                                f"source with different audio ({wav_scp[rec]!r})")
    if problems:
        raise DataDirError(f"combining into {dst}", problems)

    def merged(get, name: str) -> dict | None:
        parts = [get(d) for _, d in dirs]
        if any(p is None for p in parts):
            if any(p is not None for p in parts):
                log.warning("combine: not creating %s: missing in some source dirs", name)
            return None
        return {k: v for p in parts for k, v in p.items()}

    segments = None
    if any(d.segments is not None for _, d in dirs):
        segments = {}
        for _, d in dirs:
            segments.update(d.segments if d.segments is not None else {
                u: (u, 0.0, (d.utt2dur or {}).get(u) or _duration(d.wav_scp[u], u))
                for u in d.utt2spk})
    names = set.intersection(*(set(d.extra) for _, d in dirs))
    for n in set.union(*(set(d.extra) for _, d in dirs)) - names - {"utt2uniq"}:
        log.warning("combine: not creating %s: missing in some source dirs", n)
    if any("utt2uniq" in d.extra for _, d in dirs):
        # Kaldi's combine_data.sh: a dir without utt2uniq maps each utterance to itself.
        for _, d in dirs:
            d.extra.setdefault("utt2uniq", {u: u for u in d.utt2spk})
        names.add("utt2uniq")
    write_data_dir(KaldiDataDir(
        wav_scp=wav_scp, utt2spk=merged(lambda d: d.utt2spk, "utt2spk"),
        text=merged(lambda d: d.text or None, "text") or {},
        segments=segments, utt2dur=merged(lambda d: d.utt2dur, "utt2dur"),
        extra={n: merged(lambda d, n=n: d.extra[n], n) for n in sorted(names)}), dst)


def _gain(key: str, volume_range: tuple[float, float], peak: float) -> float:
    """A log-uniform gain in ``volume_range``, fixed by ``key``, that keeps ``peak`` < 1."""
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    low, high = np.log(volume_range[0]), np.log(volume_range[1])
    gain = float(np.exp(np.random.default_rng(seed).uniform(low, high)))
    return min(gain, 0.99 / peak) if peak > 0 else gain


def _duration(entry: str, utt: str) -> float:
    sr, n, _ = audio_info(entry, utt)
    return n / sr
