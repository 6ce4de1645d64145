r"""Compute log-mel filterbank features of a Kaldi data dir into Kaldi ark/scp files.

Jobs follow Kaldi's JOB=1:nj convention. With --job, only that job runs (for
run.pl/slurm.pl arrays); without it, every unfinished job runs here in turn and the
results are merged into OUT/feats.scp and OUT/utt2num_frames. Finished jobs are
skipped, so after a parallel run the same command without --job only merges.

    python -m speechlm.bin.compute_fbank --data-dir data/train --out-dir dump/fbank/train \
        --config conf/fbank.yaml --nj 4 --cmvn-out dump/fbank/train/feats_stats.npz

conf/fbank.yaml holds FbankConfig fields, e.g. {num_mel_bins: 80, sample_rate: 16000}.
The resolved config is written to OUT/fbank.yaml.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from speechlm.bin import command_main
from speechlm.data.features import (
    FbankConfig,
    GlobalCMVN,
    compute_feats_for_data_dir,
    merge_feats_jobs,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's options to ``parser``."""
    parser.add_argument("--data-dir", required=True, help="Kaldi data dir")
    parser.add_argument("--out-dir", required=True, help="where feats.JOB.{ark,scp} go")
    parser.add_argument("--config", default=None, help="YAML file of FbankConfig fields")
    parser.add_argument("--nj", type=int, default=1, help="number of jobs (default 1)")
    parser.add_argument("--job", type=int, default=None,
                        help="run only this job (1-based); default: all jobs, then merge")
    parser.add_argument("--cmvn-out", default=None, metavar="PATH",
                        help="write global CMVN stats (ESPnet feats_stats.npz layout)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _load_config(path: str | None) -> FbankConfig:
    if path is None:
        return FbankConfig()
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise TypeError(f"{path}: expected a mapping of FbankConfig fields")
    return FbankConfig.from_dict(data)


def run(args: argparse.Namespace) -> int:
    """Compute the requested job(s); return 0 on success."""
    if args.nj < 1:
        raise SystemExit("--nj must be >= 1")
    if args.job is not None and args.cmvn_out is not None:
        raise SystemExit("--cmvn-out needs all jobs: run without --job to merge first")
    config = _load_config(args.config)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".fbank.yaml.{os.getpid()}"  # parallel jobs write the same content
    tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    os.replace(tmp, out / "fbank.yaml")
    jobs = [args.job] if args.job is not None else range(1, args.nj + 1)
    for job in jobs:
        compute_feats_for_data_dir(args.data_dir, out, config, nj=args.nj, job=job,
                                   progress=not args.no_progress)
    if args.job is None:
        merge_feats_jobs(out, args.nj)
        if args.cmvn_out is not None:
            GlobalCMVN.from_feats_scp(out / "feats.scp").save(args.cmvn_out)
    return 0


def main(argv: list[str] | None = None) -> int:
    return command_main("speechlm compute-fbank", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
