"""Check a Kaldi data dir like Kaldi's utils/validate_data_dir.sh, audio included.

Checks required files, C-sorted unique ids, the same utterances in every file,
transcripts present, spk2utt consistent, segments sane, and (unless --no-audio)
every wav.scp entry readable, non-empty and at one sample rate.

Prints OK, or every problem (file:line: utterance: what) and exits 1. A missing utt2spk
or spk2utt is a warning, not a problem, as it is for decode (each utterance its own
speaker; spk2utt derived from utt2spk); --require-speakers makes it one (training dirs).

    python -m speechlm.bin.validate_data_dir data/train --sample-rate 16000
"""

from __future__ import annotations

import argparse
import sys

from speechlm.bin import command_main
from speechlm.data.kaldi_dir import DataDirError, validate_data_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's options to ``parser``."""
    parser.add_argument("data_dir", metavar="DIR", help="Kaldi data dir")
    parser.add_argument("--no-audio", action="store_true",
                        help="skip opening the audio (text files only)")
    parser.add_argument("--sample-rate", type=int, default=None, metavar="N",
                        help="require this sample rate in Hz (default: any, but only one)")
    parser.add_argument("--no-text", action="store_true",
                        help="do not require a text file (unlabeled test sets)")
    parser.add_argument("--require-speakers", action="store_true",
                        help="a missing utt2spk/spk2utt is a problem, not a warning")


def run(args: argparse.Namespace) -> int:
    """Validate; return 0 when the dir is fine, 1 otherwise."""
    try:
        warnings = validate_data_dir(args.data_dir, check_audio=not args.no_audio,
                                     expected_sample_rate=args.sample_rate,
                                     require_text=not args.no_text,
                                     require_speakers=args.require_speakers)
    except DataDirError as e:
        print(f"{args.data_dir}: {len(e.problems)} problem(s)", file=sys.stderr)
        for problem in e.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"OK: {args.data_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return command_main("speechlm validate-data-dir", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
