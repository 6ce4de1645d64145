"""The checks behind :func:`speechlm.data.kaldi_dir.validate_data_dir`.

Every check appends one line per problem to a list, so a user sees all of them at
once instead of fixing a dir one ``exit 1`` at a time as with Kaldi's script.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path

from speechlm.data.audio import (
    DEFAULT_COMMAND_LIMITS,
    AudioError,
    CommandLimits,
    audio_info,
    is_pipe,
)
from speechlm.data.kaldi_dir import (
    DataDirError,
    c_order,
    is_extra_file,
    parse_segment,
    read_table,
)

Rows = dict[str, tuple[int, str]]  # key -> (line number, value)


def _scan(f: Path, problems: list[str]) -> Rows:
    """Read one file, reporting bad lines and keys out of ``LC_ALL=C`` order."""
    free_text = f.name == "text" or f.name.startswith("text.")
    rows = read_table(f, value_required=not free_text, problems=problems)
    for (_, prev, _), (ln, key, _) in pairwise(rows):
        if c_order(key) < c_order(prev):
            problems.append(f"{f}:{ln}: {key!r} is out of order (after {prev!r}); "
                            "sort with LC_ALL=C sort")
    return {key: (ln, value) for ln, key, value in rows}


def _same_keys(p: Path, a: str, rows_a: Rows, b: str, rows_b: Rows, kind: str,
               problems: list[str]) -> None:
    for x, rx, y, ry in ((a, rows_a, b, rows_b), (b, rows_b, a, rows_a)):
        for key, (ln, _) in rx.items():
            if key not in ry:
                problems.append(f"{p / x}:{ln}: {kind} {key!r} is in {x} but not in {y}")


def _check_speakers(p: Path, utt2spk: Rows, spk2utt: Rows, problems: list[str]) -> None:
    listed: dict[str, str] = {}  # utterance -> speaker, as spk2utt says
    for spk, (ln, value) in spk2utt.items():
        for utt in value.split():
            listed[utt] = spk
            if utt not in utt2spk:
                problems.append(f"{p / 'spk2utt'}:{ln}: speaker {spk!r} lists utterance "
                                f"{utt!r}, which is not in utt2spk")
            elif utt2spk[utt][1] != spk:
                problems.append(f"{p / 'spk2utt'}:{ln}: speaker {spk!r} lists utterance "
                                f"{utt!r}, but utt2spk gives speaker {utt2spk[utt][1]!r}")
    for utt, (ln, spk) in utt2spk.items():
        if utt not in listed:
            problems.append(f"{p / 'utt2spk'}:{ln}: utterance {utt!r} (speaker {spk!r}) is "
                            "not listed in spk2utt; regenerate it from utt2spk")
    # Kaldi splits data by speaker with the utterance order, so sorting by
    # utterance must also sort by speaker: speaker ids must prefix utterance ids.
    pairs = sorted(((c_order(s), c_order(u), u, ln) for u, (ln, s) in utt2spk.items()),
                   key=lambda t: t[1])
    for (s0, _, u0, _), (s1, _, u1, ln) in pairwise(pairs):
        if s1 < s0:
            problems.append(f"{p / 'utt2spk'}:{ln}: utterance {u1!r} sorts after {u0!r} but "
                            "its speaker sorts before; make speaker ids prefixes of "
                            "utterance ids (Kaldi requires both orders to agree)")
            break


def _check_segments(p: Path, segments: Rows, wav: Rows | None, problems: list[str]) -> None:
    used: set[str] = set()
    for utt, (ln, value) in segments.items():
        where = f"{p / 'segments'}:{ln}: utterance {utt!r}"
        try:
            rec, start, end = parse_segment(value)
        except ValueError as e:
            problems.append(f"{where}: {e}")
            continue
        used.add(rec)
        if wav is not None and rec not in wav:
            problems.append(f"{where}: recording {rec!r} is not in wav.scp")
        if not 0 <= start < end:
            problems.append(f"{where}: needs 0 <= start < end, got start={start} end={end}")
    for rec, (ln, _) in (wav or {}).items():
        if rec not in used:
            problems.append(f"{p / 'wav.scp'}:{ln}: recording {rec!r} is not used by any segment")


def _speaker_warnings(p: Path) -> list[str]:
    # decode's rule (speechlm.bin.decode._with_speaker_maps): without utt2spk each
    # utterance is its own speaker; without spk2utt it is derived from utt2spk.
    if not (p / "utt2spk").is_file():
        return [f"{p / 'utt2spk'}: missing: each utterance is taken as its own speaker (as "
                "decode does); training and per-speaker CMN need real speakers"]
    if not (p / "spk2utt").is_file():
        return [f"{p / 'spk2utt'}: missing: derived from utt2spk "
                "(utils/utt2spk_to_spk2utt.pl), as decode does"]
    return []


def _check_structure(p: Path, require_text: bool, require_speakers: bool,
                     problems: list[str]) -> dict[str, Rows]:
    speaker_files = ["utt2spk", "spk2utt"] if require_speakers else []
    required = ["wav.scp", *speaker_files] + (["text"] if require_text else [])
    problems += [f"{p / n}: missing (required)" for n in required if not (p / n).is_file()]
    names = ["wav.scp", "utt2spk", "spk2utt", "text", "segments", "utt2dur", "feats.scp"]
    names += sorted(f.name for f in p.iterdir() if f.is_file() and is_extra_file(f.name))
    t = {n: _scan(p / n, problems) for n in names if (p / n).is_file()}

    # The utterance list every per-utterance file is checked against: utt2spk, or when
    # it may be missing, the keys of segments (else wav.scp), as decode makes them.
    keys_name = "utt2spk"
    utt2spk = t.get("utt2spk")
    if utt2spk is None:
        keys_name = "segments" if "segments" in t else "wav.scp"
        if require_speakers or keys_name not in t:
            return t
        utt2spk = t[keys_name]
    elif "spk2utt" in t:
        _check_speakers(p, utt2spk, t["spk2utt"], problems)
    if "segments" in t:
        if keys_name != "segments":
            _same_keys(p, "segments", t["segments"], keys_name, utt2spk, "utterance", problems)
        _check_segments(p, t["segments"], t.get("wav.scp"), problems)
    elif "wav.scp" in t and keys_name != "wav.scp":
        _same_keys(p, "wav.scp", t["wav.scp"], keys_name, utt2spk, "utterance", problems)
    if "text" in t:
        _same_keys(p, "text", t["text"], keys_name, utt2spk, "utterance", problems)
        problems += [f"{p / 'text'}:{ln}: utterance {utt!r} has no transcript (empty text)"
                     for utt, (ln, v) in t["text"].items() if not v]
    for name in [n for n in t if n == "utt2dur" or n == "feats.scp" or is_extra_file(n)]:
        _same_keys(p, name, t[name], keys_name, utt2spk, "utterance", problems)
    for utt, (ln, v) in t.get("utt2dur", {}).items():
        try:
            ok = float(v) > 0
        except ValueError:
            ok = False
        if not ok:
            problems.append(f"{p / 'utt2dur'}:{ln}: utterance {utt!r}: duration {v!r} is not "
                            "a positive number")
    return t


def _check_audio(p: Path, wav: Rows, has_segments: bool, expected_sample_rate: int | None,
                 problems: list[str], commands: CommandLimits) -> None:
    label = "recording" if has_segments else "utterance"

    def probe(item):
        rec, (ln, entry) = item
        try:
            return rec, ln, entry, audio_info(entry, rec, commands=commands), None
        except AudioError as e:
            return rec, ln, entry, None, e

    items = sorted(wav.items(), key=lambda kv: kv[1][0])
    plain = [probe(it) for it in items if not is_pipe(it[1][1])]  # headers: fast
    pipes = [it for it in items if is_pipe(it[1][1])]
    # Commands mostly wait on subprocesses, so a few threads are enough.
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as ex:
        results = sorted(plain + list(ex.map(probe, pipes)), key=lambda r: r[1])

    rates: dict[str, tuple[int, int, str]] = {}
    for rec, ln, entry, info, err in results:
        kind = "command" if is_pipe(entry) else "file"
        where = f"{p / 'wav.scp'}:{ln}: {label} {rec!r}, {kind} {entry!r}"
        if err is not None:
            problems.append(f"{where}: {err.reason}")
        elif expected_sample_rate is not None and info[0] != expected_sample_rate:
            problems.append(f"{where}: sample rate is {info[0]} Hz, expected "
                            f"{expected_sample_rate} Hz")
        else:
            rates[rec] = (info[0], ln, where)
    counts = Counter(sr for sr, _, _ in rates.values())
    if len(counts) > 1:
        common, n = counts.most_common(1)[0]
        for sr, _, where in sorted(rates.values(), key=lambda r: r[1]):
            if sr != common:
                problems.append(f"{where}: sample rate is {sr} Hz, but {n} of {len(rates)} "
                                f"recordings are at {common} Hz; resample to one rate")


def validate(p: Path, *, check_audio: bool, expected_sample_rate: int | None,
             require_text: bool, require_speakers: bool = True,
             commands: CommandLimits = DEFAULT_COMMAND_LIMITS) -> list[str]:
    """See :func:`speechlm.data.kaldi_dir.validate_data_dir`. ``commands`` says whether
    piped ``wav.scp`` entries may run (they are shell commands) and their timeout and
    output cap; with ``allow=False`` each one is reported as a problem."""
    if not p.is_dir():
        raise DataDirError(str(p), [f"{p}: not a directory"])
    problems: list[str] = []
    warnings = [] if require_speakers else _speaker_warnings(p)
    tables = _check_structure(p, require_text, require_speakers, problems)
    if problems:
        where = f"{p} (audio not checked yet)" if check_audio else str(p)
        raise DataDirError(where, problems)
    if check_audio:
        _check_audio(p, tables["wav.scp"], "segments" in tables, expected_sample_rate, problems,
                     commands)
    if problems:
        raise DataDirError(str(p), problems)
    return warnings
