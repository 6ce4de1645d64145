"""Kaldi data dir <-> lhotse ``CutSet``, through lhotse's own ``lhotse.kaldi`` functions.

``load_kaldi_data_dir`` and ``export_to_kaldi`` do the work; this module patches the
gaps found in lhotse 1.33 rather than re-implementing them:

- Import trusts the ``sampling_rate`` argument: a 16 kHz file declared as 8 kHz
  loads as half its samples, silently. We read each header and set the true rate
  and exact ``num_samples`` (lhotse floors durations to milliseconds).
- Durations of piped entries need ``kaldi_native_io``; we pass an exact
  ``reco2dur`` instead, so ``cmd |`` entries work without it.
- Without ``segments`` an empty transcript line crashes the ``text`` parser, and
  with ``segments`` a missing ``text`` raises; we always hand lhotse a ``segments``
  file and a ``text`` file (whole-recording segments for segment-less dirs).
- Extra ``utt2*`` files are dropped; we keep them in ``supervision.custom``.
- Export writes ``None`` for missing text or speaker, adds a space before ``|``,
  always writes ``segments`` and no ``spk2utt``, and turns a lazily resampled
  recording into an ``ffmpeg`` pipe; we fix those up (the original file is
  written, since Kaldi-side readers resample anyway).

Only the first channel of a multi-channel recording is used (lhotse's choice on
import); :func:`speechlm.data.audio.read_audio` averages channels instead.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from lhotse import CutSet, RecordingSet, SupervisionSet
from lhotse.kaldi import export_to_kaldi, load_kaldi_data_dir
from lhotse.utils import fastcopy

from speechlm.data.audio import audio_info, is_pipe
from speechlm.data.kaldi_dir import (
    DataDirError,
    KaldiDataDir,
    c_sorted,
    format_float,
    is_extra_file,
    read_data_dir,
    write_data_dir,
)

__all__ = ["cuts_to_data_dir", "data_dir_to_cuts"]

# Extras lhotse itself maps onto SupervisionSegment fields (utt2lang -> language).
_NATIVE = {"utt2lang": "language", "utt2gender": "gender"}


def data_dir_to_cuts(path: str | Path, sample_rate: int | None = None) -> CutSet:
    """Load a Kaldi data dir as one cut per utterance.

    Args:
        path: The data dir (``wav.scp`` and ``utt2spk`` required).
        sample_rate: Resample lazily to this rate in Hz; ``None`` keeps each file's
            own rate (read from its header, not assumed).

    Returns:
        A ``CutSet`` in ``LC_ALL=C`` utterance order; ``cut.id`` is the utterance id
        and each cut has one supervision with ``text`` (``None`` without a ``text``
        file), ``speaker`` and ``custom`` holding the extra files, e.g.
        ``{"utt2intent": "play_music"}``.

    Raises:
        DataDirError: The dir does not parse.
        AudioError: A recording cannot be opened.
    """
    d = read_data_dir(path)
    segments = d.segments if d.segments is not None else {u: (u,) for u in d.utt2spk}
    homeless = [u for u in d.utterances if segments.get(u, ("",))[0] not in d.wav_scp]
    if homeless:  # lhotse would fail with a bare KeyError
        where = "segments" if d.segments is not None else "wav.scp"
        raise DataDirError(str(path), [f"{Path(path) / where}: utterance {u!r} has no "
                                       "recording in wav.scp" for u in homeless])
    info = {rec: audio_info(entry, rec) for rec, entry in d.wav_scp.items()}  # (sr, n, ch)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        segments = d.segments or {
            u: (u, 0.0, info[u][1] / info[u][0]) for u in d.utt2spk if u in info
        }
        lines = {
            "wav.scp": d.wav_scp,
            "reco2dur": {r: repr(n / sr) for r, (sr, n, _) in info.items()},
            "segments": {u: f"{r} {s!r} {e!r}" for u, (r, s, e) in segments.items()},
            "text": {u: d.text.get(u, "") for u in d.utt2spk},
            "utt2spk": d.utt2spk,
            **{name: d.extra[name] for name in _NATIVE if name in d.extra},
        }
        for name, mapping in lines.items():
            (t / name).write_text("".join(f"{k} {v}\n" for k, v in mapping.items()),
                                  encoding="utf-8")
        any_rate = next(iter(info.values()))[0] if info else 16000
        recordings, supervisions, _ = load_kaldi_data_dir(t, sampling_rate=any_rate)

    def fix_recording(r):
        sr, n, _ = info[r.id]
        return fastcopy(r, sampling_rate=sr, num_samples=n, duration=n / sr)

    def fix_supervision(s):
        custom = {k: v[s.id] for k, v in d.extra.items() if k not in _NATIVE and s.id in v}
        return fastcopy(s, text=s.text if d.text else None, custom=custom or None)

    recordings = RecordingSet.from_recordings(fix_recording(r) for r in recordings)
    if sample_rate is not None:
        recordings = recordings.resample(sample_rate)
    supervisions = SupervisionSet.from_segments(fix_supervision(s) for s in supervisions)
    cuts = CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
    cuts = cuts.trim_to_supervisions(keep_overlapping=False)
    by_id = {c.id: c for c in cuts}
    return CutSet.from_cuts(by_id[k] for k in c_sorted(by_id))


def _drop_resampling(r):
    """Undo lazy resampling: Kaldi-side readers (ours, ESPnet's) resample on read,
    while lhotse would export an ``ffmpeg -ar`` pipe that needs ffmpeg installed."""
    names = [t["name"] if isinstance(t, dict) else type(t).__name__ for t in r.transforms or []]
    if not names or any(n != "Resample" for n in names):
        return r
    return fastcopy(r, transforms=None)


def cuts_to_data_dir(cuts: CutSet, path: str | Path) -> None:
    """Write the supervisions of ``cuts`` as a Kaldi data dir (one utterance each).

    ``segments`` is written unless every utterance is a whole recording with the
    recording's id, so a dir without segments round-trips to one without.
    ``custom`` fields whose names are ``utt2*``/``text.*`` and present on every
    supervision become files. A missing speaker becomes the utterance id (Kaldi's
    convention for "no speaker information").

    Args:
        cuts: Cuts over file or command recordings (lhotse cannot export others).
        path: Output data dir; written atomically file by file.
    """
    recordings, supervisions, _ = cuts.decompose()
    sups = sorted(supervisions, key=lambda s: s.id.encode())
    with tempfile.TemporaryDirectory() as tmp:
        export_to_kaldi(RecordingSet.from_recordings(_drop_resampling(r) for r in recordings),
                        SupervisionSet.from_segments(sups), tmp)
        exported = read_data_dir(tmp)
    wav_scp = {r: (e[:-1].rstrip() + " |" if is_pipe(e) else e)
               for r, e in exported.wav_scp.items()}
    durations = {r.id: r.duration for r in recordings}
    whole = all(s.id == s.recording_id and s.start == 0
                and abs(s.duration - durations[s.id]) < 1e-3 for s in sups)
    names = {k for s in sups for k in (s.custom or {}) if is_extra_file(k)}
    extra = {name: {s.id: str(s.custom[name]) for s in sups}
             for name in names if all(name in (s.custom or {}) for s in sups)}
    for name, field in _NATIVE.items():
        if all(getattr(s, field) is not None for s in sups):
            extra[name] = {s.id: str(getattr(s, field)) for s in sups}
    write_data_dir(KaldiDataDir(
        wav_scp=wav_scp,
        utt2spk={s.id: s.speaker if s.speaker is not None else s.id for s in sups},
        text={s.id: s.text for s in sups if s.text is not None},
        segments=None if whole else exported.segments,
        utt2dur={s.id: float(format_float(s.duration)) for s in sups},
        extra=extra,
    ), path)
