r"""Synthesise a Kaldi data dir with espeak-ng and Piper: every text line spoken by each voice.

Each (line, voice) pair becomes one 16-bit mono WAV and one utterance
``<prefix>-<voice id>-<line id>`` whose speaker is ``<prefix>-<voice id>``, so utt2spk groups
by voice. The dir gets wav.scp, text, utt2spk, spk2utt, utt2dur and utt2voice (the voice as
``KIND:NAME``, e.g. ``piper:joe`` or ``espeak:en-us+m3``, to score voice kinds apart), sorted
as with LC_ALL=C.

Voices: by default --num-voices espeak voices drawn by ``speechlm.data.tts.sample_voices``
(English accents x variants x rate x pitch), reproducibly for a seed. ``--voices`` lists them
instead: ``piper:joe`` (a catalogue voice, or a Piper ``.onnx`` path), ``espeak:en-us+m3``,
and ``espeak:sampled`` for the --num-voices sampled ones. Each Piper voice gives
--piper-renditions renditions: its own settings, then seeded variations of Piper's length and
noise scales.

--text takes Kaldi ``utt-id words...`` lines or plain lines (which get ids 0001, 0002...);
``--text-format auto`` picks Kaldi when every line starts with a unique id-like token
(containing a digit, ``_`` or ``-``, and not only digits).

--augment adds reverb (to 30% of the utterances) and white or pink noise at an SNR drawn per
utterance from 10-30 dB; ``--snr-db 5`` fixes it, ``--snr-db 0,10`` draws from another range
(``speechlm.data.tts.augment``).

Reruns are cheap: a finished dir has a ``.done`` marker holding a hash of the arguments and
the text; with the same hash the run does nothing, otherwise the dir is rewritten from scratch.

Example:
  python -m speechlm.bin.synth_data_dir --text digits.txt --num-voices 50 --seed 0 \
      --out data/synth_digits --augment
  python -m speechlm.bin.synth_data_dir --text digits.txt --voices piper:joe,espeak:sampled \
      --piper-renditions 4 --num-voices 20 --out data/synth_digits --augment
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from speechlm.bin import command_main
from speechlm.data.audio import write_wav
from speechlm.data.kaldi_dir import KaldiDataDir, write_data_dir
from speechlm.data.tts import (
    EspeakVoice,
    PiperVoice,
    SynthesisError,
    Synthesizer,
    augment,
    check_voice,
    parse_voice,
    piper_model_files,
    piper_renditions,
    sample_voices,
)

_VERSION = 2  # bump when the output for the same arguments changes (2: utt2voice, Piper)
_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")  # Kaldi ids that are also safe in file names
_KALDI_FILES = ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur")

log = logging.getLogger("speechlm.bin.synth_data_dir")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's options to ``parser``."""
    parser.add_argument("--text", type=Path, required=True, help="text file, one utterance a line")
    parser.add_argument(
        "--text-format", choices=("auto", "kaldi", "plain"), default="auto",
        help="'kaldi': lines are 'utt-id words...'; 'plain': whole line is the text",
    )  # fmt: skip
    parser.add_argument(
        "--voices", default=None,
        help="comma-separated KIND:NAME voices, e.g. piper:joe,espeak:en-us+m3,espeak:sampled "
             "(default: --num-voices sampled espeak voices)",
    )  # fmt: skip
    parser.add_argument("--piper-renditions", type=int, default=1,
                        help="renditions of each Piper voice (varied length/noise scales)")
    parser.add_argument("--num-voices", type=int, default=10,
                        help="espeak voices sampled, without --voices or for espeak:sampled "
                             "(every line is spoken by each voice, unless --voices-per-line)")
    parser.add_argument("--voices-per-line", type=int, default=0,
                        help="speak each line with only this many voices drawn from the "
                             "--num-voices (seeded per line); 0 = all")
    parser.add_argument("--seed", type=int, default=0, help="seed for voices and augmentation")
    parser.add_argument("--sample-rate", type=int, default=16000, help="output rate in Hz")
    parser.add_argument("--augment", action="store_true", help="add noise and synthetic reverb")
    parser.add_argument(
        "--snr-db", default=None, metavar="LO,HI",
        help="with --augment: the SNR in dB of the added noise, drawn uniformly from LO,HI per "
             "utterance, or one value for a fixed SNR (default: 10,30)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="Kaldi data dir to write")
    parser.add_argument("--wav-dir", type=Path, default=None, help="default: OUT/wav")
    parser.add_argument("--speaker-prefix", default="synth", help="prefix of speaker ids")
    parser.add_argument(
        "--num-threads", type=int, default=1,
        help="torch threads for resampling/augmenting and ONNX Runtime threads for Piper; for "
             "more speed run several processes",
    )  # fmt: skip
    parser.add_argument(
        "--languages", default=None,
        help="comma-separated espeak voices, e.g. en-us,en-gb-scotland (default: English)",
    )  # fmt: skip
    parser.add_argument(
        "--variants", default=None,
        help="comma-separated variants, 'default' for the plain voice, e.g. default,m3,f2",
    )  # fmt: skip


def read_text(path: Path, text_format: str = "auto") -> list[tuple[str, str]]:
    """Read ``(line id, text)`` pairs from a Kaldi text file or a plain one.

    Args:
        path: the file; blank lines are skipped.
        text_format: ``"kaldi"``, ``"plain"`` or ``"auto"`` (see the module docstring).

    Raises:
        ValueError: no lines, or bad/duplicate ids in a Kaldi file (naming file and line).
    """
    lines = [
        (n, line.split())
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if line.strip()
    ]
    if not lines:
        raise ValueError(f"text file {path} has no non-blank lines")
    if text_format == "auto":
        firsts = [f[0] for _, f in lines]
        kaldi = len(set(firsts)) == len(firsts) and all(
            len(f) >= 2 and _ID_RE.match(f[0]) and re.search(r"[0-9_-]", f[0])
            and not f[0].isdigit()
            for _, f in lines
        )  # fmt: skip
        text_format = "kaldi" if kaldi else "plain"
    if text_format == "plain":
        width = max(4, len(str(len(lines))))
        return [(f"{i:0{width}d}", " ".join(f)) for i, (_, f) in enumerate(lines, 1)]
    seen: set[str] = set()
    for n, fields in lines:
        if len(fields) < 2 or not _ID_RE.match(fields[0]) or fields[0] in seen:
            raise ValueError(
                f"{path}:{n}: expected 'utt-id words...' with a unique id of [A-Za-z0-9_.-], "
                f"got {' '.join(fields)!r}"
            )
        seen.add(fields[0])
    return [(f[0], " ".join(f[1:])) for _, f in lines]


DEFAULT_SNR_DB = (10.0, 30.0)


def parse_snr_db(value: str | None) -> tuple[float, float]:
    """``--snr-db``: ``"LO,HI"`` (uniform range) or ``"X"`` (fixed) -> ``(lo, hi)`` in dB.

    >>> parse_snr_db("5"), parse_snr_db("0,20"), parse_snr_db(None)
    ((5.0, 5.0), (0.0, 20.0), (10.0, 30.0))

    Raises:
        ValueError: not one or two finite numbers, or LO > HI.
    """
    if value is None:
        return DEFAULT_SNR_DB
    parts = [p.strip() for p in value.split(",")]
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        nums = []
    if len(nums) not in (1, 2) or not all(np.isfinite(nums)):
        raise ValueError(f"--snr-db takes LO,HI or one value in dB (e.g. 10,30 or 5), "
                         f"got {value!r}")
    lo, hi = nums[0], nums[-1]
    if lo > hi:
        raise ValueError(f"--snr-db {value!r}: LO must not exceed HI")
    return lo, hi


def _split(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


Voice = EspeakVoice | PiperVoice
Row = tuple[str, str, str, str, float, str]  # utt, spk, wav, text, duration, voice label


def build_voices(args: argparse.Namespace) -> list[Voice]:
    """The voices ``args`` ask for, each checked (names, model files) before any synthesis.

    Raises:
        ValueError: a bad or unknown voice (naming it), or a voice listed twice.
    """
    variants = _split(args.variants)
    if variants is not None:
        variants = [None if v in ("default", "none") else v for v in variants]

    def sampled() -> list[Voice]:
        return list(sample_voices(args.num_voices, args.seed, languages=_split(args.languages),
                                  variants=variants))

    specs = _split(args.voices)
    if specs is None:
        return sampled()
    if not specs:
        raise ValueError("--voices lists no voices")
    voices: list[Voice] = []
    for spec in specs:
        if spec == "espeak:sampled":
            voices += sampled()
            continue
        voice = parse_voice(spec)
        if isinstance(voice, PiperVoice):
            piper_model_files(voice.model)  # an unknown voice fails here, listing the known
            voices += piper_renditions(voice, args.piper_renditions, args.seed)
        else:
            check_voice(voice)
            voices.append(voice)
    ids = [v.id for v in voices]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"--voices gives these voices more than once: {', '.join(twice)}")
    return voices


def _write_kaldi_dir(out: Path, rows: list[Row]) -> None:
    """Write the data dir from (utt, spk, wav, text, duration, voice) rows with the shared
    writer."""
    write_data_dir(KaldiDataDir(wav_scp={r[0]: r[2] for r in rows},
                                utt2spk={r[0]: r[1] for r in rows},
                                text={r[0]: r[3] for r in rows},
                                utt2dur={r[0]: r[4] for r in rows},
                                extra={"utt2voice": {r[0]: r[5] for r in rows}}), out)


def _clean(out: Path, wav_dir: Path, default_wav_dir: bool) -> None:
    """Remove what an earlier (different or unfinished) run left, before rewriting."""
    (out / ".done").unlink(missing_ok=True)
    if default_wav_dir:
        shutil.rmtree(wav_dir, ignore_errors=True)
    elif (out / "wav.scp").exists():  # a user-given wav dir may hold other files: only ours go
        for line in (out / "wav.scp").read_text(encoding="utf-8").splitlines():
            wav = Path(line.split(maxsplit=1)[-1])
            if wav.parent == wav_dir.resolve():
                wav.unlink(missing_ok=True)
    for name in (*_KALDI_FILES, "utt2voice"):
        (out / name).unlink(missing_ok=True)


def _synthesize_all(
    args: argparse.Namespace,
    entries: list[tuple[str, str]],
    voices: list[Voice],
    wav_dir: Path,
) -> list[Row]:
    """Write one WAV per (voice, line); returns (utt, spk, wav, text, duration, voice) rows."""
    synth = Synthesizer(args.sample_rate, num_threads=args.num_threads, seed=args.seed)
    rows = []
    per_line = getattr(args, "voices_per_line", 0) or len(voices)
    pairs = [(v_idx, l_idx) for v_idx in range(len(voices)) for l_idx in range(len(entries))]
    if per_line < len(voices):
        # each line gets its own draw of voices, so a set of lines spans the whole pool
        pairs = sorted((int(v), l_idx) for l_idx in range(len(entries))
                       for v in np.random.default_rng([args.seed, 7, l_idx]).choice(
                           len(voices), size=per_line, replace=False))
    progress = tqdm(total=len(pairs), desc="synth", unit="utt", disable=None)
    for v_idx, l_idx in pairs:
        voice = voices[v_idx]
        spk = f"{args.speaker_prefix}-{voice.id}"
        line_id, text = entries[l_idx]
        samples, sr = synth.synthesize(text, voice)
        if args.augment:
            # One generator per utterance: its audio does not depend on what came before.
            samples = augment(samples, sr, np.random.default_rng([args.seed, v_idx, l_idx]),
                              snr_db_range=parse_snr_db(getattr(args, "snr_db", None)))
        utt = f"{spk}-{line_id}"
        wav = (wav_dir / f"{utt}.wav").resolve()
        write_wav(wav, samples, sr)
        rows.append((utt, spk, str(wav), text, len(samples) / sr, voice.label))
        progress.update()
    progress.close()
    return rows


def run(args: argparse.Namespace) -> int:
    """Write the data dir described by ``args``; returns 0.

    Raises:
        ValueError: empty or malformed text file, unknown or bad voice/variant, bad prefix,
            synthesis failing on a line.
        FileNotFoundError: missing text file.
    """
    if not _ID_RE.match(args.speaker_prefix):
        raise ValueError(f"--speaker-prefix {args.speaker_prefix!r} must match [A-Za-z0-9_.-]+")
    if args.num_threads < 1:
        raise ValueError(f"--num-threads must be at least 1, got {args.num_threads}")
    if args.num_voices < 1:
        raise ValueError(f"--num-voices must be at least 1, got {args.num_voices}")
    if args.piper_renditions < 1:
        raise ValueError(f"--piper-renditions must be at least 1, got {args.piper_renditions}")
    snr_db = parse_snr_db(args.snr_db)
    if args.snr_db is not None and not args.augment:
        raise ValueError("--snr-db sets the noise of --augment; pass --augment too")
    entries = read_text(args.text, args.text_format)
    voices = build_voices(args)
    if not 0 <= args.voices_per_line <= len(voices):
        raise ValueError(f"--voices-per-line must be in 0..{len(voices)} (the number of "
                         f"voices), got {args.voices_per_line}")

    out: Path = args.out
    wav_dir: Path = args.wav_dir if args.wav_dir is not None else out / "wav"
    key = {
        "version": _VERSION,
        "text_sha256": hashlib.sha256(args.text.read_bytes()).hexdigest(),
        "voices": [v.id for v in voices],
        **{k: str(getattr(args, k)) for k in ("text_format", "sample_rate", "augment", "seed",
                                              "voices_per_line")},
        "wav_dir": str(wav_dir.resolve()),
        "speaker_prefix": args.speaker_prefix,
    }
    if snr_db != DEFAULT_SNR_DB:  # only then, so dirs written before --snr-db stay complete
        key["snr_db"] = list(snr_db)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    done = out / ".done"
    if done.exists() and done.read_text(encoding="utf-8").strip() == digest:
        log.info("%s is complete (same arguments); nothing to do", out)
        return 0

    out.mkdir(parents=True, exist_ok=True)
    _clean(out, wav_dir, default_wav_dir=args.wav_dir is None)
    wav_dir.mkdir(parents=True, exist_ok=True)
    # Clips are short, so intra-op threads gain nothing; on shared cores a spinning OpenMP
    # team made each utterance ~5x slower. Restored after, as run() may be called in-process.
    threads = torch.get_num_threads()
    torch.set_num_threads(args.num_threads)
    try:
        rows = _synthesize_all(args, entries, voices, wav_dir)
    except SynthesisError as e:  # bad text or voice: a user error, not a crash
        raise ValueError(str(e)) from e
    finally:
        torch.set_num_threads(threads)
    _write_kaldi_dir(out, rows)
    done.write_text(digest + "\n", encoding="utf-8")  # last, so a crash leaves no marker
    log.info("wrote %d utterances from %d voices to %s", len(rows), len(voices), out)
    return 0


def main(argv: list[str] | None = None) -> int:
    return command_main("speechlm synth-data-dir", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
