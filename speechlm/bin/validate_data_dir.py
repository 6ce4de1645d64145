"""Check a Kaldi data dir like Kaldi's utils/validate_data_dir.sh, audio included.

Checks required files, C-sorted unique ids, the same utterances in every file,
transcripts present, spk2utt consistent, segments sane, and (unless --no-audio)
every wav.scp entry readable, non-empty and at one sample rate.

Prints OK, or every problem (file:line: utterance: what) and exits 1. A missing utt2spk
or spk2utt is a warning, not a problem, as it is for decode (each utterance its own
speaker; spk2utt derived from utt2spk); --require-speakers makes it one (training dirs).

    python -m speechlm.bin.validate_data_dir data/train --sample-rate 16000
    python -m speechlm.bin.validate_data_dir untrusted/data --no-commands

wav.scp entries ending in ``|`` are shell commands (Kaldi's convention), and checking the
audio RUNS them, each with a timeout (--command-timeout) and a cap on its output
(--command-max-mb), in its own process group that is killed past either. Validate a data
dir from someone else with --no-commands (every command is reported, none is run) or
--no-audio (nothing is opened).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speechlm.bin import command_main
from speechlm.data.audio import CommandLimits
from speechlm.data.kaldi_dir import DataDirError


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
    parser.add_argument("--no-commands", action="store_true",
                        help="refuse wav.scp commands ('cmd |'): report them, run none "
                             "(for data dirs you did not write; commands run in a shell)")
    parser.add_argument("--command-timeout", type=float, default=300.0, metavar="S",
                        help="seconds a wav.scp command may run before it is killed")
    parser.add_argument("--command-max-mb", type=float, default=1024.0, metavar="MB",
                        help="most MiB read from a wav.scp command's stdout (it is killed "
                             "past that)")


def run(args: argparse.Namespace) -> int:
    """Validate; return 0 when the dir is fine, 1 otherwise."""
    # the checks of validate_data_dir, called with the command policy it does not take yet
    from speechlm.data._validate import validate

    commands = CommandLimits(allow=not args.no_commands, timeout_s=args.command_timeout,
                             max_bytes=int(args.command_max_mb * 2**20))
    try:
        warnings = validate(Path(args.data_dir), check_audio=not args.no_audio,
                            expected_sample_rate=args.sample_rate,
                            require_text=not args.no_text,
                            require_speakers=args.require_speakers, commands=commands)
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
