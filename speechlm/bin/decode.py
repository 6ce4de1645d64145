r"""Decode a Kaldi data dir: OUT/text and OUT/nbest.jsonl, and with --lattice lattices,
confusion networks, a CTM and oracle WERs.

    speechlm decode --model-dir exp/asr/model --data-dir data/test --out exp/asr/decode_test \
        [--nj 2] [--beam 10] [--nbest 5] [--ctc-weight 0.3]
    speechlm decode --model-dir exp/asr/model --graph exp/asr/graph --lattice ...
    speechlm decode --backend pocketsphinx --data-dir data/test --out exp/ps/decode_test \
        --lattice [--ps-lm lm.arpa] [--ps-dict words.dic]
    speechlm decode --config conf/decode.yaml --model-dir exp/asr/model ...  # flags win

Every decode setting is a field of ``speechlm.asr.DecodeConfig``: the YAML keys of
``--config`` are the flags' names with ``_`` (``ctc_weight: 0.3`` = ``--ctc-weight 0.3``),
unknown keys are errors. The resolved config is written to OUT/decode_config.yaml, and
the CLI, the Python API and the server build the same ``speechlm.asr.Recognizer`` from it.

Backends: ``espnet`` (a model dir from ``speechlm train-asr``; joint CTC/attention beam
search, or with ``--lattice`` a CTC lattice over the ``--graph`` from ``speechlm make-graph``
whose N-best is rescored by the attention decoder) and ``pocketsphinx`` (the pip wheel's
US-English model, or ``--ps-*`` files; always decodes through a lattice).

The data dir is validated (audio headers included) before any decoding starts. Features
are computed with the model dir's own settings into OUT/feats. With ``--nj N`` the
utterances are split into N jobs run in parallel (``speechlm launch``; sets of fewer
than 100 utterances per job use fewer jobs); ``--job J`` runs one of them, for a
cluster launcher, and ``--merge-only`` joins the finished jobs. Finished jobs are
skipped on a re-run. A model trained with per-speaker CMN (``compute-fbank --cmn
speaker``) normalises each speaker by the mean over all of their utterances in the data
dir (utt2spk); speakers with under 3 s of speech, e.g. each utterance its own speaker when
utt2spk is missing, are padded with the job's mean. Jobs then hold whole speakers.

Outputs (sorted by utterance id, LC_ALL=C order):
  OUT/decode_config.yaml  the resolved settings
  OUT/text          utt-id word word ...   (the best hypothesis)
  OUT/nbest.jsonl   {"utt": id, "hyps": [{"text": ..., "score": ...}, ...]}  best first
With --lattice also:
  OUT/lat/lat.J.gz  lattices, Kaldi text CompactLattice form with integer word ids, one
                    file per job, and OUT/lat/words.txt (their symbol table)
  OUT/cn.jsonl      {"utt": id, "bins": [[{"word": w, "posterior": p, "start": s,
                    "end": e}, ...], ...]}  confusion networks, "<eps>" = deletion
  OUT/text.mbr      the MBR (consensus) 1-best of each confusion network
  OUT/ctm           utt 1 start dur word confidence  (MBR words, bin posteriors)
  OUT/oracle_wer    1-best, MBR, lattice, N-best and WCN oracle WERs (needs DATA/text)
  OUT/oracle.jsonl  per utterance: those error counts and "oracle_text", the lattice path
                    closest to the reference
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path

from speechlm.bin import command_main
from speechlm.bin.decode_outputs import JobWriter as _JobWriter
from speechlm.bin.decode_outputs import merge_job_outputs

MIN_UTTS_PER_JOB = 100
CONFIG_FILE = "decode_config.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from speechlm.asr.decode_config import add_config_arguments

    parser.add_argument("--data-dir", required=True, help="Kaldi data dir to decode")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--nj", type=int, default=1, help="number of parallel jobs")
    parser.add_argument("--min-utts-per-job", type=int, default=MIN_UTTS_PER_JOB,
                        help="fewer jobs than --nj when a set is small (each job pays "
                             "the model's load time)")
    parser.add_argument("--job", type=int, default=None,
                        help="run only job J of --nj (1-based); merge with --merge-only")
    parser.add_argument("--merge-only", action="store_true",
                        help="only merge finished job outputs into OUT/text, OUT/nbest.jsonl")
    parser.add_argument("--cmd", default="local",
                        help="job runner, Kaldi style: 'local' (this machine, in parallel), "
                             "or a run.pl-like command such as the recipe's $decode_cmd "
                             "('utils/run.pl', 'utils/slurm.pl --mem 2G'), called as "
                             "CMD JOB=1:N LOG decode ... --job JOB")
    add_config_arguments(parser)


def _with_speaker_maps(data_dir: Path, out: Path) -> Path:
    """``data_dir``, or a copy in OUT/data with utt2spk/spk2utt made up when missing.

    Decoding needs no speaker information, and a dir made by hand often has only
    ``wav.scp`` (and ``text``). Kaldi's convention for unknown speakers is used: each
    utterance is its own speaker. Nothing in ``data_dir`` is changed.
    """
    if (data_dir / "utt2spk").is_file() and (data_dir / "spk2utt").is_file():
        return data_dir
    if not (data_dir / "wav.scp").is_file():
        return data_dir  # validation names what is missing
    copy = out / "data"
    if copy.exists():
        shutil.rmtree(copy)
    copy.mkdir(parents=True)
    for f in data_dir.iterdir():
        if f.is_file():
            shutil.copyfile(f, copy / f.name)
    if not (copy / "utt2spk").is_file():
        key_file = copy / ("segments" if (copy / "segments").is_file() else "wav.scp")
        with open(key_file, encoding="utf-8") as src, \
                open(copy / "utt2spk", "w", encoding="utf-8") as dst:
            for line in src:
                if line.strip():
                    utt = line.split()[0]
                    dst.write(f"{utt} {utt}\n")
    spk2utt: dict[str, list[str]] = {}
    with open(copy / "utt2spk", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                utt, spk = line.split()[:2]
                spk2utt.setdefault(spk, []).append(utt)
    with open(copy / "spk2utt", "w", encoding="utf-8") as f:
        f.writelines(f"{spk} {' '.join(utts)}\n" for spk, utts in sorted(spk2utt.items()))
    print(f"decode: warning: {data_dir} has no utt2spk/spk2utt; decoding a copy in {copy} "
          "with one speaker per utterance", file=sys.stderr)
    return copy


def _job_dir(out: Path, nj: int, job: int) -> Path:
    return out / f"split{nj}" / str(job)


def _fingerprint(config, data_dir: str, utts: list[str]) -> str:
    """What makes a finished job's output reusable: the settings and the files they name,
    the data and the job's utterances."""
    import hashlib

    from speechlm.core.hashing import dir_digest

    parts = [config.fingerprint(), dir_digest(data_dir), *utts]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _speaker_cmn(config) -> bool:
    """Whether the model normalises features per speaker (its frontend.yaml says so)."""
    if config.backend != "espnet":
        return False
    from speechlm.asr import model_dir as md

    cmn = md.read_yaml(Path(config.model) / md.FRONTEND).get("cmn") or {}
    return cmn.get("type", "none") == "speaker"


def _split(config, d, nj: int, job: int) -> list[str]:
    """This job's utterances: whole speakers when the model uses speaker CMN (so each
    speaker's mean is taken over all of their utterances), else Kaldi's contiguous split."""
    from speechlm.data.cmn import split_by_speaker
    from speechlm.data.features import split_utterances

    if _speaker_cmn(config):
        return split_by_speaker(d.utterances, d.utt2spk, nj, job)
    return split_utterances(d.utterances, nj, job)


def _batches(items, size: int):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def decode_job(config, data_dir: str, out: Path, nj: int, job: int) -> None:
    """Decode job ``job`` of ``nj`` into OUT/splitN/J/ (text, nbest.jsonl, lattices)."""
    from tqdm import tqdm

    from speechlm.asr.recognizer import Recognizer
    from speechlm.data.kaldi_dir import read_data_dir

    d = read_data_dir(data_dir)
    utts = _split(config, d, nj, job)
    job_dir = _job_dir(out, nj, job)
    done = job_dir / ".done"
    stamp = _fingerprint(config, data_dir, utts)
    if done.is_file() and done.read_text().strip() == stamp:
        print(f"decode: job {job}/{nj} already done ({job_dir})", file=sys.stderr)
        return
    import torch

    # Parallel jobs share the cores: with every job on all cores, the small matrix ops of
    # beam search spend their time fighting over threads (measured 2.6 s vs 0.02 s per digit).
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // nj))
    recognizer = Recognizer(config)
    items = recognizer.data_dir_inputs(data_dir, d, utts, out, nj=nj, job=job)

    job_dir.mkdir(parents=True, exist_ok=True)
    done.unlink(missing_ok=True)
    with _JobWriter(job_dir, lattice=config.lattice, refs=d.text) as writer, \
            tqdm(total=len(utts), desc=f"decode {job}/{nj}", mininterval=2.0) as bar:
        for batch in _batches(items, config.batch_size):
            for result in recognizer.decode(batch, wcn=config.lattice):
                writer.add(result)
            bar.update(len(batch))
    done.write_text(stamp + "\n")


def merge_jobs(out: Path, nj: int, *, lattice: bool = False) -> None:
    """Join finished job outputs into sorted OUT/text, OUT/nbest.jsonl (and lattice files)."""
    job_dirs = [_job_dir(out, nj, job) for job in range(1, nj + 1)]
    for job, job_dir in enumerate(job_dirs, start=1):
        if not (job_dir / ".done").is_file():
            raise RuntimeError(f"decode job {job}/{nj} has not finished: no {job_dir}/.done")
    merge_job_outputs(out, job_dirs, lattice=lattice)


def _check_inputs(config) -> None:
    """Files the config names exist and are what they should be (errors name them)."""
    if config.backend == "espnet":
        from speechlm.asr.model_dir import check_model_dir

        check_model_dir(config.model)
        if config.lattice:
            from speechlm.asr.ctc_graph import DecodingGraph

            DecodingGraph.read(config.graph)  # fails early naming a missing file


def run(args: argparse.Namespace) -> int:
    from speechlm.asr.decode_config import config_from_args

    out = Path(args.out)
    if args.nj < 1 or (args.job is not None and not 1 <= args.job <= args.nj):
        print(f"decode: need 1 <= --job <= --nj, got --job {args.job} --nj {args.nj}",
              file=sys.stderr)
        return 2
    try:
        config = config_from_args(args)
    except ValueError as e:
        print(f"decode: {e}", file=sys.stderr)
        return 2
    if args.merge_only:
        merge_jobs(out, args.nj, lattice=config.lattice)
        return 0
    data_dir = args.data_dir
    try:
        _check_inputs(config)
        if args.job is None:
            from speechlm.data.kaldi_dir import validate_data_dir

            data_dir = str(_with_speaker_maps(Path(data_dir), out))
            # Validate once, up front, so that bad input fails before any long work.
            validate_data_dir(data_dir, check_audio=True, require_text=False)
    except ValueError as e:  # ModelDirError, DataDirError: messages name files and utts
        print(f"decode: {e}", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    if args.job is not None:
        decode_job(config, data_dir, out, args.nj, args.job)
        return 0
    config.write_yaml(out / CONFIG_FILE)
    from speechlm.data.kaldi_dir import read_data_dir

    # Each job process pays ESPnet's ~10 s import: don't split small sets into jobs.
    d = read_data_dir(data_dir)
    n_utts = len(d.utterances)
    nj = min(args.nj, max(1, n_utts // max(1, args.min_utts_per_job)))
    if _speaker_cmn(config):  # jobs hold whole speakers
        nj = min(nj, len(set(d.utt2spk.values())))
    if nj != args.nj:
        print(f"decode: {n_utts} utterances: using {nj} job(s) instead of {args.nj}",
              file=sys.stderr)
    if nj == 1 and args.cmd == "local":
        decode_job(config, data_dir, out, 1, 1)
    else:
        # the jobs read the resolved settings from the file written above: one list of them
        argv = [sys.executable, "-m", "speechlm.bin.decode", "--config",
                str(out / CONFIG_FILE), "--data-dir", data_dir, "--out", str(out),
                "--nj", str(nj), "--job", "JOB"]
        log = str(out / "log" / "decode.JOB.log")
        from speechlm.bin.launch import run_jobs

        rc = run_jobs(args.cmd, nj, log, argv, what="decode")
        if rc != 0:
            return rc
    merge_jobs(out, nj, lattice=config.lattice)
    print(f"decode: {n_utts} utterances -> {out}/text, {out}/nbest.jsonl "
          f"(cmd: {' '.join(shlex.quote(a) for a in sys.argv)})", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return command_main("speechlm decode", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
