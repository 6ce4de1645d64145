"""Join Kaldi data dirs into one, like Kaldi's utils/combine_data.sh.

    speechlm combine-data-dirs --dst data/train_all data/train_sp data/synth

Duplicate utterance ids are an error naming both source dirs. The result is validated.
"""
from __future__ import annotations

import argparse
import sys

from speechlm.bin import command_main
from speechlm.data.kaldi_dir import DataDirError, validate_data_dir
from speechlm.data.perturb import combine_data_dirs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dst", required=True, help="output data dir")
    parser.add_argument("srcs", nargs="+", help="source data dirs")


def run(args: argparse.Namespace) -> int:
    try:
        combine_data_dirs(args.dst, args.srcs)
        validate_data_dir(args.dst, check_audio=False)
    except (DataDirError, ValueError) as e:
        print(f"combine-data-dirs: {e}", file=sys.stderr)
        return 1
    print(f"combine-data-dirs: {' + '.join(args.srcs)} -> {args.dst}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return command_main("speechlm combine-data-dirs", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
