"""NAB-form data dirs: ``data/<group>/<name>.csv`` (``timestamp,value``) and
``labels/combined_windows.json`` (``{"<group>/<name>.csv": [[start, end], ...]}``).

Any dir of this form is read the same way (the shared 44 series, the kept-back 14, a
user's own). What the reader does with awkward input:

- a missing or wrong header, an unparsable timestamp, an empty file, a labels key naming a
  series that is not there, a window that does not parse or ends before it starts, a
  series with no labels entry: ``NABError`` naming the file (and the line or key);
- timestamps that go backwards (NAB's own machine_temperature file has one): the rows are
  stably sorted by time and the count and first line go into ``notes``; with
  ``strict=True`` a ``NABError`` names the line instead. A repeated timestamp is kept and
  noted (NAB's own files repeat a few, at clock changes);
- an empty or non-numeric value (``""``, ``nan``, ``NULL``): kept as NaN, counted in
  ``Series.notes``. Rules see the NaN; the classic detectors carry the last value forward;
- gaps (a step over 3x the median step): kept as they are, counted in ``notes``;
  rules get the timestamps and may use them;
- a constant series: kept, noted; the z-score detectors then never fire.

Labels: a point is anomalous when its timestamp lies inside a window (ends included).

The time split (``split``) cuts each series at ``train_frac`` of its points: the first part
trains (rules, thresholds, isolation forests), the rest is the test set; windows are cut
with it.

>>> s = Series("g/x.csv", np.arange(4.0) * 60, np.array([1.0, 2, 9, 2]), [(120.0, 120.0)])
>>> s.labels.tolist()
[False, False, True, False]
>>> [p.values.tolist() for p in split(s, 0.5)]
[[1.0, 2.0], [9.0, 2.0]]
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speechlm.core.errors import InputError

__all__ = ["NABError", "Series", "read_nab", "split", "parse_time"]


class NABError(InputError):
    """A NAB-form data dir that cannot be read; the message names the file."""


@dataclass(frozen=True)
class Series:
    """One univariate series with its anomaly windows.

    Args:
        key: ``<group>/<name>.csv``, the key in the labels file.
        timestamps: (T,) float64 seconds since the epoch, never decreasing.
        values: (T,) float64, NaN where the file had no number.
        windows: anomaly windows as (start, end) seconds, ends included.
        notes: what the reader noticed and kept (NaN count, gaps, constant).
    """

    key: str
    timestamps: np.ndarray
    values: np.ndarray
    windows: list[tuple[float, float]] = field(default_factory=list)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.timestamps.shape != self.values.shape or self.values.ndim != 1:
            raise ValueError(f"{self.key}: timestamps {self.timestamps.shape} and values "
                             f"{self.values.shape} must be the same (T,) shape")

    @property
    def labels(self) -> np.ndarray:
        """(T,) bool: inside any window."""
        out = np.zeros(len(self.values), dtype=bool)
        for start, end in self.windows:
            out |= (self.timestamps >= start) & (self.timestamps <= end)
        return out

    def __len__(self) -> int:
        return len(self.values)


def parse_time(text: str) -> float:
    """``2014-04-10 16:15:00[.000000]`` (UTC, as NAB writes it) -> seconds since the epoch."""
    return float(np.datetime64(text.strip().replace(" ", "T"), "us").astype(np.int64)) / 1e6


def read_nab(data_dir: str | Path, labels: str = "labels/combined_windows.json",
             strict: bool = False) -> list[Series]:
    """Every series under ``<data_dir>/data`` with its windows, sorted by key.

    Args:
        data_dir: the NAB-form dir (holds ``data/`` and the labels file).
        labels: the windows file, relative to ``data_dir`` (or absolute).
        strict: raise on timestamps that go back instead of sorting the rows.
    """
    root = Path(data_dir)
    csv_root = root / "data"
    if not csv_root.is_dir():
        raise NABError(f"{root}: no 'data' folder (expected <dir>/data/<group>/<name>.csv)")
    label_path = root / labels
    try:
        windows = json.loads(label_path.read_text())
    except FileNotFoundError as e:
        raise NABError(f"{label_path}: labels file not found") from e
    except json.JSONDecodeError as e:
        raise NABError(f"{label_path}: not JSON: {e}") from e
    if not isinstance(windows, dict):
        raise NABError(f"{label_path}: expected an object mapping series keys to windows")
    files = {p.relative_to(csv_root).as_posix(): p for p in sorted(csv_root.rglob("*.csv"))}
    if not files:
        raise NABError(f"{csv_root}: no CSV files")
    missing = sorted(set(windows) - set(files))
    if missing:
        raise NABError(f"{label_path}: names {len(missing)} series not under {csv_root}: "
                       f"{', '.join(missing[:5])}")
    unlabelled = sorted(set(files) - set(windows))
    if unlabelled:
        raise NABError(f"{label_path}: has no entry for {', '.join(unlabelled[:5])} "
                       f"(give an empty list for a series without anomalies)")
    return [_read_csv(files[key], key, _windows(windows[key], label_path, key), strict)
            for key in sorted(files)]


def _windows(raw, label_path: Path, key: str) -> list[tuple[float, float]]:
    out = []
    if not isinstance(raw, list):
        raise NABError(f"{label_path}: {key}: expected a list of [start, end] windows")
    for i, w in enumerate(raw):
        try:
            start, end = (parse_time(x) for x in w)
        except (TypeError, ValueError) as e:
            raise NABError(f"{label_path}: {key}: window {i} {w!r} does not parse: {e}") from e
        if end < start:
            raise NABError(f"{label_path}: {key}: window {i} ends before it starts")
        out.append((start, end))
    return out


def _read_csv(path: Path, key: str, windows: list[tuple[float, float]],
              strict: bool) -> Series:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise NABError(f"{path}: empty file")
    if [c.strip() for c in rows[0]] != ["timestamp", "value"]:
        raise NABError(f"{path}: line 1: header must be 'timestamp,value', got {rows[0]!r}")
    rows = rows[1:]
    if not rows:
        raise NABError(f"{path}: no data rows")
    for i, row in enumerate(rows):
        if len(row) != 2:
            raise NABError(f"{path}: line {i + 2}: expected 2 fields, got {len(row)}")
    try:
        stamps = (np.array([r[0].strip().replace(" ", "T") for r in rows], dtype="datetime64[us]")
                  .astype(np.int64) / 1e6)
    except ValueError:
        for i, row in enumerate(rows):
            try:
                parse_time(row[0])
            except ValueError as e:
                raise NABError(f"{path}: line {i + 2}: bad timestamp {row[0]!r}") from e
        raise
    values = np.array([_number(r[1]) for r in rows], dtype=np.float64)
    steps = np.diff(stamps)
    bad = np.flatnonzero(steps < 0)
    notes = []
    if bad.size:
        i = int(bad[0]) + 1
        if strict:
            raise NABError(f"{path}: line {i + 2}: timestamp {rows[i][0]!r} is before the "
                           f"one before it ({rows[i - 1][0]!r}); timestamps must not go back")
        order = np.argsort(stamps, kind="stable")
        stamps, values = stamps[order], values[order]
        steps = np.diff(stamps)
        notes.append(f"{bad.size} backward steps (first at line {i + 2}): rows sorted by time")
    repeats = int((steps == 0).sum())
    if repeats:
        notes.append(f"{repeats} repeated timestamps kept (NAB has some at clock changes)")
    nan = int(np.isnan(values).sum())
    if nan:
        notes.append(f"{nan} missing values kept as NaN")
    if steps.size:
        gaps = int((steps > 3 * np.median(steps)).sum())
        if gaps:
            notes.append(f"{gaps} gaps over 3x the median step")
    finite = values[np.isfinite(values)]
    if finite.size and np.ptp(finite) == 0:
        notes.append("constant values")
    return Series(key, stamps, values, windows, tuple(notes))


def _number(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        return float("nan")
    return x if np.isfinite(x) else float("nan")


def split(series: Series, train_frac: float = 0.5) -> tuple[Series, Series]:
    """(train, test): the first ``train_frac`` of the points, then the rest, windows cut."""
    if not 0 < train_frac < 1:
        raise ValueError(f"train_frac must be in (0, 1), got {train_frac}")
    cut = int(len(series) * train_frac)
    if cut == 0 or cut == len(series):
        raise NABError(f"{series.key}: {len(series)} points are too few to split")
    t_cut = series.timestamps[cut]

    def part(sl: slice, lo: float, hi: float) -> Series:
        ws = [(max(a, lo), min(b, hi)) for a, b in series.windows if b >= lo and a <= hi]
        return Series(series.key, series.timestamps[sl], series.values[sl], ws, series.notes)

    return (part(slice(0, cut), -np.inf, series.timestamps[cut - 1]),
            part(slice(cut, None), t_cut, np.inf))
