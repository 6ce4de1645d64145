r"""Speed-perturb a Kaldi data dir (Kaldi/ESPnet 3-way perturbation) and combine.

For each factor f != 1.0, DST/sp<f>/ gets a copy with ids prefixed sp<f>- and the
audio as 16-bit WAVs in WAV_DIR/sp<f>/ (default DST/sp<f>/wav); factor 1.0 keeps
the original ids. The parts are then combined into DST (with utt2uniq linking the
copies of an utterance). Finished parts are skipped on a rerun.

    python -m speechlm.bin.speed_perturb --src data/train --dst data/train_sp \
        --factors 0.9 1.0 1.1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speechlm.bin import command_main
from speechlm.data.kaldi_dir import validate_data_dir
from speechlm.data.perturb import combine_data_dirs, speed_perturb_data_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's options to ``parser``."""
    parser.add_argument("--src", required=True, help="source Kaldi data dir")
    parser.add_argument("--dst", required=True, help="combined output data dir")
    parser.add_argument("--factors", type=float, nargs="+", default=[0.9, 1.0, 1.1],
                        help="speed factors (default: 0.9 1.0 1.1)")
    parser.add_argument("--wav-dir", default=None,
                        help="where perturbed WAVs go (default: DST/sp<f>/wav)")
    parser.add_argument("--volume-range", type=float, nargs=2, default=None,
                        metavar=("LOW", "HIGH"),
                        help="also scale each recording by a random gain in [LOW, HIGH] "
                             "(Kaldi uses 0.125 2)")
    parser.add_argument("--sample-rate", type=int, default=16000,
                        help="sample rate of the written WAVs (default 16000)")


def run(args: argparse.Namespace) -> int:
    """Perturb, combine and check the result; return 0 on success."""
    dst = Path(args.dst)
    parts = []
    for factor in args.factors:
        part = dst / f"sp{factor:g}"
        wav_dir = Path(args.wav_dir) / part.name if args.wav_dir else part / "wav"
        speed_perturb_data_dir(args.src, part, factor, wav_dir=wav_dir,
                               target_sample_rate=args.sample_rate,
                               volume_range=tuple(args.volume_range) if args.volume_range
                               else None)
        parts.append(part)
    combine_data_dirs(dst, parts)
    validate_data_dir(dst, check_audio=False, require_text=False)
    print(f"{dst}: combined speed factors {' '.join(f'{f:g}' for f in args.factors)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return command_main("speechlm speed-perturb", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
