#!/usr/bin/env python3
"""ARPA word n-gram (interpolated Kneser-Ney, speechlm.asr.ngram) from a plain text file."""
import argparse
import sys

from speechlm.asr.ngram import write_arpa


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--text", required=True)
    p.add_argument("--order", type=int, default=3)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    with open(args.text, encoding="utf-8") as f:
        write_arpa((line for line in f if line.strip()), args.out, order=args.order)
    return 0


if __name__ == "__main__":
    sys.exit(main())
