#!/usr/bin/env python3
"""Kaldi data dirs for the Free Spoken Digit Dataset, split by speaker.

Recordings are ``{digit}_{speaker}_{index}.wav`` (8 kHz mono). The dev speaker is never
trained on: their indices >= 5 form ``dev`` (model selection), indices 0-4 form ``test``
(FSDD's official test indices). The other speakers' indices >= 5 are ``train`` and their
indices 0-4 are ``test_seen`` (same speakers, unseen takes). Transcripts are the
lowercase English digit words.

    local/prepare_fsdd.py --fsdd /path/to/fsdd --dev-speaker yweweler --out data
"""
import argparse
import re
import sys
from pathlib import Path

from speechlm.data.kaldi_dir import KaldiDataDir, write_data_dir

WORDS = "zero one two three four five six seven eight nine".split()
NAME = re.compile(r"^(?P<digit>[0-9])_(?P<speaker>[A-Za-z0-9]+)_(?P<index>[0-9]+)\.wav$")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fsdd", required=True, type=Path, help="FSDD root (has recordings/)")
    parser.add_argument("--dev-speaker", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--max-index", type=int, default=49,
                        help="use takes 0..N only (a small subset for quick tests)")
    args = parser.parse_args()

    rec_dir = args.fsdd / "recordings"
    wavs = sorted(rec_dir.glob("*.wav")) if rec_dir.is_dir() else []
    if not wavs:
        print(f"prepare_fsdd: no WAV files in {rec_dir}", file=sys.stderr)
        return 1
    sets: dict[str, dict[str, tuple[Path, str, str]]] = {
        "train": {}, "dev": {}, "test": {}, "test_seen": {}}
    speakers = set()
    for wav in wavs:
        m = NAME.match(wav.name)
        if not m:
            print(f"prepare_fsdd: {wav}: name is not digit_speaker_index.wav", file=sys.stderr)
            return 1
        speaker, index = m["speaker"], int(m["index"])
        speakers.add(speaker)
        if index > args.max_index:
            continue
        # Speaker-prefixed ids keep utt2spk and spk2utt in the same sort order (Kaldi rule).
        utt = f"{speaker}-{m['digit']}-{index:02d}"
        if speaker == args.dev_speaker:
            name = "test" if index < 5 else "dev"
        else:
            name = "test_seen" if index < 5 else "train"
        sets[name][utt] = (wav.resolve(), WORDS[int(m["digit"])], speaker)
    if args.dev_speaker not in speakers:
        print(f"prepare_fsdd: dev speaker {args.dev_speaker!r} not among {sorted(speakers)}",
              file=sys.stderr)
        return 1
    for name, items in sets.items():
        d = KaldiDataDir(wav_scp={u: str(p) for u, (p, _, _) in items.items()},
                         text={u: t for u, (_, t, _) in items.items()},
                         utt2spk={u: s for u, (_, _, s) in items.items()})
        write_data_dir(d, args.out / name)
        print(f"prepare_fsdd: {args.out / name}: {len(items)} utterances, "
              f"{len({s for _, _, s in items.values()})} speaker(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
