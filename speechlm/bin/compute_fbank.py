r"""Compute log-mel filterbank features of a Kaldi data dir into Kaldi ark/scp files.

Jobs follow Kaldi's JOB=1:nj convention. With --job, only that job runs (for
run.pl/slurm.pl arrays); without it, every unfinished job runs here in turn and the
results are merged into OUT/feats.scp and OUT/utt2num_frames. Finished jobs are
skipped, so after a parallel run the same command without --job only merges.

    python -m speechlm.bin.compute_fbank --data-dir data/train --out-dir dump/fbank/train \
        --config conf/fbank.yaml --nj 4 --cmvn-out dump/fbank/train/feats_stats.npz

conf/fbank.yaml holds FbankConfig fields, e.g. {num_mel_bins: 80, sample_rate: 16000}.
A config with ``type: whisper_encoder`` computes Whisper encoder frames instead
(``speechlm.asr.whisper_features``).
The resolved config is written to OUT/fbank.yaml.

With ``--cmn speaker`` (per-speaker mean normalisation, speechlm.data.cmn) the raw
features go to OUT/raw and OUT/feats.scp holds the normalised ones; OUT/cmn.yaml records
the settings, which ``speechlm train-asr`` puts into the model dir so that decoding
normalises the same way. The prior (global mean) is that of this data dir's raw features,
or, for dev and test sets, taken from the training dump with ``--cmn-from``:

    python -m speechlm.bin.compute_fbank --data-dir data/train --out-dir dump/train \
        --cmn speaker --cmvn-out dump/train/cmvn.npz
    python -m speechlm.bin.compute_fbank --data-dir data/dev --out-dir dump/dev \
        --cmn speaker --cmn-from dump/train/cmn.yaml
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from speechlm.bin import command_main
from speechlm.data.cmn import DEFAULT_PRIOR_FRAMES, SpeakerCMN, normalize_feats_dir
from speechlm.data.features import (
    FbankConfig,
    GlobalCMVN,
    compute_feats_for_data_dir,
    merge_feats_jobs,
)
from speechlm.data.kaldi_dir import read_data_dir


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
    parser.add_argument("--cmn", choices=("none", "speaker"), default="none",
                        help="per-speaker mean normalisation of the features (default none)")
    parser.add_argument("--cmn-from", default=None, metavar="CMN_YAML",
                        help="take the CMN prior from this cmn.yaml (a training dump's)")
    parser.add_argument("--cmn-prior-frames", type=float, default=DEFAULT_PRIOR_FRAMES,
                        help="weight of the global-mean prior, in frames (default %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--cmd", default="local",
                        help="how the --nj jobs run: local (in parallel here) or a Kaldi "
                             "launcher, e.g. utils/run.pl or 'utils/slurm.pl --mem 2G'")


def _load_config(path: str | None):
    """FbankConfig, or WhisperFeatureConfig for a YAML with ``type: whisper_encoder``."""
    if path is None:
        return FbankConfig()
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise TypeError(f"{path}: expected a mapping of FbankConfig fields")
    from speechlm.asr.whisper_features import feature_config_from_dict

    try:
        return feature_config_from_dict(data)
    except ValueError as e:
        raise SystemExit(f"{path}: {e}") from None


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
    if args.cmn == "none" and args.cmn_from:
        raise SystemExit("--cmn-from needs --cmn speaker")
    raw = out / "raw" if args.cmn == "speaker" else out
    if args.job is not None or (args.nj == 1 and args.cmd == "local"):
        compute_feats_for_data_dir(args.data_dir, raw, config, nj=args.nj, job=args.job or 1,
                                   progress=not args.no_progress)
    else:  # the jobs in parallel, each its own process (finished ones return at once)
        from speechlm.bin.launch import run_jobs

        argv = [sys.executable, "-m", "speechlm.bin.compute_fbank", "--data-dir",
                str(args.data_dir), "--out-dir", str(out), "--config", str(out / "fbank.yaml"),
                "--cmn", args.cmn, "--nj", str(args.nj), "--job", "JOB", "--no-progress"]
        rc = run_jobs(args.cmd, args.nj, str(out / "log" / "fbank.JOB.log"), argv,
                      what="compute-fbank")
        if rc != 0:
            return rc
    if args.job is not None:
        return 0  # the run without --job merges (and normalises)
    merge_feats_jobs(raw, args.nj)
    if args.cmn == "speaker":
        cmn = _speaker_cmn(args, raw / "feats.scp")
        normalize_feats_dir(raw / "feats.scp", read_data_dir(args.data_dir).utt2spk, cmn, out)
        tmp = out / f".cmn.yaml.{os.getpid()}"
        tmp.write_text(yaml.safe_dump(cmn.to_dict(), sort_keys=False))
        os.replace(tmp, out / "cmn.yaml")
    if args.cmvn_out is not None:
        GlobalCMVN.from_feats_scp(out / "feats.scp").save(args.cmvn_out)
    return 0


def _speaker_cmn(args: argparse.Namespace, raw_scp: Path) -> SpeakerCMN:
    """The CMN settings: the prior from --cmn-from, or this data's raw global mean."""
    if args.cmn_from:
        with open(args.cmn_from, encoding="utf-8") as f:
            cmn = SpeakerCMN.from_dict(yaml.safe_load(f))
        if cmn is None:
            raise SystemExit(f"--cmn-from {args.cmn_from}: no speaker CMN settings in it")
        return cmn
    return SpeakerCMN(GlobalCMVN.from_feats_scp(raw_scp).mean, args.cmn_prior_frames)


def main(argv: list[str] | None = None) -> int:
    return command_main("speechlm compute-fbank", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
