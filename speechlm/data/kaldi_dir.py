"""Kaldi data directories: read, write and validate.

A data dir holds ``wav.scp`` (recording -> path or ``cmd |``), ``utt2spk``,
``spk2utt``, ``text`` and optionally ``segments`` (utt -> rec start end, seconds) and
``utt2dur``. Other ``utt2*`` files (``utt2intent``, ``utt2lang``, ``utt2uniq``...) and
``text.*`` files (``text.slots``) are kept verbatim. Every file is sorted in
``LC_ALL=C`` (bytewise) order, as Kaldi's tools require. Data dirs are a bridge to
Kaldi and ESPnet recipes; :mod:`speechlm.data.lhotse_io` turns them into manifests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DataDirError", "KaldiDataDir", "c_order", "c_sorted", "format_float",
           "is_extra_file", "parse_segment", "read_data_dir", "read_table", "validate_data_dir",
           "write_data_dir"]


class DataDirError(ValueError):
    """A data dir (or one of its files) is malformed.

    Attributes:
        problems: Every problem found, one line each, naming file, line and utterance.
    """

    # The message shows this many problems; ``problems`` keeps all of them.
    MAX_SHOWN = 50

    def __init__(self, where: str, problems: list[str]):
        self.problems = list(problems)
        shown = self.problems[: self.MAX_SHOWN]
        msg = f"{where}: {len(self.problems)} problem(s):\n" + "\n".join(f"  {p}" for p in shown)
        if len(self.problems) > len(shown):
            msg += f"\n  ... and {len(self.problems) - len(shown)} more (see .problems)"
        super().__init__(msg)


def c_order(s: str) -> bytes:
    """Sort key equal to ``LC_ALL=C sort`` (bytewise UTF-8) order."""
    return s.encode("utf-8", "surrogateescape")


def c_sorted(keys) -> list[str]:
    """``sorted`` in ``LC_ALL=C`` order."""
    return sorted(keys, key=c_order)


def is_extra_file(name: str) -> bool:
    """Per-utterance files kept verbatim: ``utt2*`` (but utt2spk, utt2dur) and ``text.*``."""
    return (name.startswith("utt2") and name not in ("utt2spk", "utt2dur")) or (
        name.startswith("text.") and not name.endswith(".tmp")
    )


@dataclass(frozen=True)
class KaldiDataDir:
    """The contents of a Kaldi data dir.

    Attributes:
        wav_scp: Recording id -> file path or shell command ending in ``|``.
        utt2spk: Utterance id -> speaker id. Its keys are the utterances.
        text: Utterance id -> transcript; empty when the dir has no ``text`` file.
        segments: Utterance id -> (recording id, start, end) in seconds, or ``None``
            when every recording is one utterance (utterance id == recording id).
        utt2dur: Utterance id -> duration in seconds, or ``None``.
        extra: File name -> (utterance id -> value) for other ``utt2*`` / ``text.*``.

    >>> d = KaldiDataDir(wav_scp={"a1": "a1.wav"}, utt2spk={"a1": "a"}, text={"a1": "HI"})
    >>> d.utterances, d.spk2utt
    (['a1'], {'a': ['a1']})
    >>> d.recording_of("a1")
    ('a1', 0.0, None)
    """

    wav_scp: dict[str, str]
    utt2spk: dict[str, str]
    text: dict[str, str] = field(default_factory=dict)
    segments: dict[str, tuple[str, float, float]] | None = None
    utt2dur: dict[str, float] | None = None
    extra: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def utterances(self) -> list[str]:
        """Utterance ids in ``LC_ALL=C`` order."""
        return c_sorted(self.utt2spk)

    @property
    def spk2utt(self) -> dict[str, list[str]]:
        """Speaker id -> utterance ids, derived from ``utt2spk`` (both sorted)."""
        out: dict[str, list[str]] = {}
        for utt in self.utterances:
            out.setdefault(self.utt2spk[utt], []).append(utt)
        return {spk: out[spk] for spk in c_sorted(out)}

    def recording_of(self, utt: str) -> tuple[str, float, float | None]:
        """Return ``(recording id, start, end)`` of ``utt``; ``end`` None = to the end."""
        if self.segments is not None:
            return self.segments[utt]
        return utt, 0.0, None


# --- reading -----------------------------------------------------------------------


def read_table(path: Path, *, value_required: bool = True,
               problems: list[str] | None = None) -> list[tuple[int, str, str]]:
    """Read a ``key value...`` file as ``[(line number, key, value)]`` in file order.

    Args:
        path: The file.
        value_required: Whether a line holding only a key is a problem (it is not
            in ``text``, where it means an empty transcript).
        problems: If given, problems are appended here and bad lines skipped;
            otherwise the first problem raises.

    Raises:
        DataDirError: Naming the file and line: undecodable UTF-8, an empty line, a
            carriage return (a file edited on Windows), a missing value, or (only
            when ``problems`` is None) a duplicate key.
    """
    collect: list[str] = [] if problems is None else problems
    start = len(collect)
    rows: list[tuple[int, str, str]] = []
    seen: dict[str, int] = {}
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                collect.append(f"{where}: not valid UTF-8")
                continue
            line = line.rstrip("\n")
            if "\r" in line:
                collect.append(f"{where}: carriage return (\\r) in line; convert with dos2unix")
                line = line.replace("\r", "")
            parts = line.strip().split(maxsplit=1)
            if not parts:
                collect.append(f"{where}: empty line")
                continue
            key, value = parts[0], (parts[1].strip() if len(parts) > 1 else "")
            if not value and value_required:
                collect.append(f"{where}: {key!r} has no value")
                continue
            if key in seen:
                collect.append(f"{where}: duplicate key {key!r} (first on line {seen[key]})")
                continue
            seen[key] = lineno
            rows.append((lineno, key, value))
    if problems is None and len(collect) > start:
        raise DataDirError(str(path), collect)
    return rows


def parse_segment(value: str) -> tuple[str, float, float]:
    """Parse ``"rec start end"``; raises ValueError with a short reason."""
    fields = value.split()
    if len(fields) != 3:
        raise ValueError(f"expected 'utt rec start end', got {len(fields) + 1} fields")
    try:
        return fields[0], float(fields[1]), float(fields[2])
    except ValueError:
        raise ValueError(f"start/end are not numbers: {value!r}") from None


def read_data_dir(path: str | Path) -> KaldiDataDir:
    """Read a Kaldi data dir. Lenient about order (see :func:`validate_data_dir`).

    Args:
        path: The data dir; needs ``wav.scp`` and ``utt2spk``.

    Returns:
        The :class:`KaldiDataDir`. ``spk2utt`` is not read: it is derived.

    Raises:
        DataDirError: A required file is missing, or a line does not parse; the
            message names the file and line.
    """
    p = Path(path)
    missing = [f"{p / n}: missing (required)" for n in ("wav.scp", "utt2spk")
               if not (p / n).is_file()]
    if missing:
        raise DataDirError(str(p), missing)

    def table(name: str, **kw) -> dict[str, tuple[int, str]]:
        return {k: (ln, v) for ln, k, v in read_table(p / name, **kw)}

    def floats(name: str, rows: dict[str, tuple[int, str]]) -> dict[str, float]:
        out = {}
        for key, (ln, v) in rows.items():
            try:
                out[key] = float(v)
            except ValueError:
                problem = f"{p / name}:{ln}: {key!r}: {v!r} is not a number"
                raise DataDirError(str(p / name), [problem]) from None
        return out

    segments = None
    if (p / "segments").is_file():
        segments = {}
        for utt, (ln, v) in table("segments").items():
            try:
                segments[utt] = parse_segment(v)
            except ValueError as e:
                raise DataDirError(str(p / "segments"),
                                   [f"{p / 'segments'}:{ln}: utterance {utt!r}: {e}"]) from None
    return KaldiDataDir(
        wav_scp={k: v for k, (_, v) in table("wav.scp").items()},
        utt2spk={k: v for k, (_, v) in table("utt2spk").items()},
        text=({k: v for k, (_, v) in table("text", value_required=False).items()}
              if (p / "text").is_file() else {}),
        segments=segments,
        utt2dur=floats("utt2dur", table("utt2dur")) if (p / "utt2dur").is_file() else None,
        extra={f.name: {k: v for k, (_, v) in table(f.name, value_required=False).items()}
               for f in sorted(p.iterdir()) if f.is_file() and is_extra_file(f.name)},
    )


# --- writing -----------------------------------------------------------------------


def format_float(x: float) -> str:
    """Shortest text that reads back as ``x`` rounded to microseconds (``1.5``, ``0.0``)."""
    return repr(round(float(x), 6))


def _lines(mapping: dict[str, str], name: str) -> str:
    out = []
    for key in c_sorted(mapping):
        value = str(mapping[key])
        if not key or any(c.isspace() for c in key):
            raise ValueError(f"{name}: key {key!r} is empty or contains whitespace")
        if "\n" in value or "\r" in value:
            raise ValueError(f"{name}: value of {key!r} contains a line break")
        out.append(f"{key} {value}" if value else key)
    return "".join(line + "\n" for line in out)


def write_data_dir(d: KaldiDataDir, path: str | Path) -> None:
    """Write ``d`` as a sorted Kaldi data dir, with ``spk2utt`` derived from ``utt2spk``.

    All files are written to temporary names first and then renamed, so a killed
    writer never leaves a half-written file. ``text``, ``segments`` and ``utt2dur``
    left over from an earlier write are removed when ``d`` lacks them; files this
    module does not manage (``feats.scp``...) are left alone.

    Args:
        d: The data.
        path: Output folder, created if needed.

    Raises:
        ValueError: An id is empty or has whitespace, or a value has a line break.
    """
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    files = {
        "wav.scp": _lines(d.wav_scp, "wav.scp"),
        "utt2spk": _lines(d.utt2spk, "utt2spk"),
        "spk2utt": _lines({s: " ".join(u) for s, u in d.spk2utt.items()}, "spk2utt"),
    }
    if d.text:
        files["text"] = _lines(d.text, "text")
    if d.segments is not None:
        files["segments"] = _lines({u: f"{r} {format_float(s)} {format_float(e)}"
                                    for u, (r, s, e) in d.segments.items()}, "segments")
    if d.utt2dur is not None:
        files["utt2dur"] = _lines({u: format_float(v) for u, v in d.utt2dur.items()}, "utt2dur")
    for name, mapping in d.extra.items():
        if not is_extra_file(name):
            raise ValueError(f"extra file name {name!r} must start with 'utt2' or 'text.'")
        files[name] = _lines(mapping, name)
    for name, content in files.items():
        (p / f".{name}.tmp").write_text(content, encoding="utf-8")
    for name in files:
        os.replace(p / f".{name}.tmp", p / name)
    for stale in ("text", "segments", "utt2dur"):
        if stale not in files and (p / stale).is_file():
            (p / stale).unlink()


def validate_data_dir(
    path: str | Path,
    *,
    check_audio: bool = True,
    expected_sample_rate: int | None = None,
    require_text: bool = True,
    require_speakers: bool = True,
) -> list[str]:
    """Check a data dir the way Kaldi's ``utils/validate_data_dir.sh`` does, and more.

    Checks, in order: required files (``wav.scp``, ``utt2spk``, ``spk2utt``, and
    ``text`` if ``require_text``); every file C-sorted with unique keys and no empty
    lines; the same utterances in ``text``, ``utt2spk``, ``segments`` (or ``wav.scp``),
    ``utt2dur`` and the extra ``utt2*`` files; no empty transcripts; ``spk2utt`` equal
    to the one derived from ``utt2spk``, and ``utt2spk`` sorted by speaker too
    (speaker ids should prefix utterance ids); segments on known recordings with
    ``0 <= start < end``; positive ``utt2dur``. If all that passes and
    ``check_audio``, every ``wav.scp`` entry is opened: headers only for files,
    piped commands are run. Audio must be non-empty, at ``expected_sample_rate``
    if given, and otherwise all at one rate (the odd files are reported).

    Structural problems are reported before any audio is opened, so a broken dir
    fails in well under a second.

    Args:
        path: The data dir.
        check_audio: Open the audio too.
        expected_sample_rate: Required rate in Hz, or ``None`` for "any, but one".
        require_text: Whether ``text`` must exist (not for unlabeled test sets).
        require_speakers: Whether ``utt2spk`` and ``spk2utt`` must exist. When False,
            they may be missing, as for ``speechlm decode`` (each utterance its own
            speaker, ``spk2utt`` derived from ``utt2spk``): a warning each, and the
            other files are checked against the utterances of ``segments`` or ``wav.scp``.

    Returns:
        Warnings (one line each, naming the file); empty when there are none.

    Raises:
        DataDirError: Listing every problem found, each naming the file, line and
            utterance (or recording).
    """
    # Lazy import: the checks live in their own module to keep both short.
    from speechlm.data._validate import validate

    return validate(Path(path), check_audio=check_audio,
                    expected_sample_rate=expected_sample_rate, require_text=require_text,
                    require_speakers=require_speakers)
