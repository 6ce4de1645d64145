r"""Decode a Kaldi data dir: OUT/text and OUT/nbest.jsonl, and with --lattice lattices,
confusion networks, a CTM and oracle WERs.

    speechlm decode --model-dir exp/asr/model --data-dir data/test --out exp/asr/decode_test \
        [--nj 2] [--beam 10] [--nbest 5] [--ctc-weight 0.3]
    speechlm decode --model-dir exp/asr/model --graph exp/asr/graph --lattice ...
    speechlm decode --backend pocketsphinx --data-dir data/test --out exp/ps/decode_test \
        --lattice [--ps-lm lm.arpa] [--ps-dict words.dic]

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
  OUT/text          utt-id word word ...   (the best hypothesis)
  OUT/nbest.jsonl   {"utt": id, "hyps": [{"text": ..., "score": ...}, ...]}  best first
With --lattice also:
  OUT/lat/lat.J.gz  lattices, Kaldi text form (words as strings), one file per job
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
import hashlib
import os
import shlex
import shutil
import sys
from pathlib import Path

from tqdm import tqdm

from speechlm.bin import command_main
from speechlm.bin.decode_outputs import JobWriter as _JobWriter
from speechlm.bin.decode_outputs import merge_job_outputs
from speechlm.core.hashing import dir_digest, file_sha256
from speechlm.data.cmn import split_by_speaker
from speechlm.data.features import split_utterances
from speechlm.data.kaldi_dir import read_data_dir, validate_data_dir

MIN_UTTS_PER_JOB = 100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=("espnet", "pocketsphinx"), default="espnet",
                        help="espnet: a trained --model-dir; pocketsphinx: general English")
    parser.add_argument("--model-dir", default=None,
                        help="model dir (see speechlm train-asr); espnet backend")
    parser.add_argument("--data-dir", required=True, help="Kaldi data dir to decode")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--nj", type=int, default=1, help="number of parallel jobs")
    parser.add_argument("--job", type=int, default=None,
                        help="run only job J of --nj (1-based); merge with --merge-only")
    parser.add_argument("--merge-only", action="store_true",
                        help="only merge finished job outputs into OUT/text, OUT/nbest.jsonl")
    parser.add_argument("--beam", type=int, default=None, help="beam size (model dir default)")
    parser.add_argument("--config", default=None,
                        help="YAML of decoding options (beam, ctc_weight, penalty, nbest); "
                             "options given on the command line win")
    parser.add_argument("--nbest", type=int, default=None,
                        help="hypotheses kept per utterance (default 1)")
    parser.add_argument("--ctc-weight", type=float, default=None,
                        help="CTC weight in joint CTC/attention scoring")
    parser.add_argument("--penalty", type=float, default=None, help="insertion penalty")
    parser.add_argument("--device", default="cpu")
    lat = parser.add_argument_group("lattices (--lattice)")
    lat.add_argument("--lattice", action="store_true",
                     help="decode through a lattice; also write lat/, cn.jsonl, ctm, oracle_wer")
    lat.add_argument("--graph", default=None,
                     help="decoding graph dir (speechlm make-graph); espnet backend")
    lat.add_argument("--search-beam", type=float, default=None,
                     help="lattice decoder beam, natural-log score units (default 16)")
    lat.add_argument("--lattice-beam", type=float, default=None,
                     help="keep lattice arcs within this score of the best (default 8)")
    lat.add_argument("--lm-scale", type=float, default=None,
                     help="graph (n-gram) weight against acoustics in the search (default 1)")
    lat.add_argument("--lm-weight", type=float, default=None,
                     help="n-gram weight in the attention rescoring (default 0)")
    lat.add_argument("--rescore-nbest", type=int, default=None,
                     help="lattice paths rescored by the attention decoder (default 10)")
    ps = parser.add_argument_group("pocketsphinx backend")
    ps.add_argument("--ps-hmm", default=None, help="acoustic model dir (default: en-us)")
    ps.add_argument("--ps-lm", default=None, help="ARPA or binary LM (default: en-us)")
    ps.add_argument("--ps-dict", default=None, help="pronunciation dictionary (default: cmudict)")
    ps.add_argument("--ps-jsgf", default=None, help="JSGF grammar instead of an n-gram")
    ps.add_argument("--ps-lw", type=float, default=None, help="LM weight (default 6.5)")


CONFIG_KEYS = ("beam", "ctc_weight", "penalty", "nbest", "search_beam", "lattice_beam",
               "lm_scale", "lm_weight", "rescore_nbest")


def _apply_config(args: argparse.Namespace) -> None:
    """Fill options not given on the command line from ``--config``; nbest defaults to 1."""
    if args.config:
        import yaml

        with open(args.config, encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise ValueError(f"{args.config}: unknown option(s) {', '.join(unknown)}; "
                             f"known: {', '.join(CONFIG_KEYS)}")
        for key, value in config.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
    if args.nbest is None:
        args.nbest = 1


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


def _fingerprint(args: argparse.Namespace, utts: list[str]) -> str:
    """What makes a finished job's output reusable: the model, options, data and utterances."""
    parts = [file_sha256(Path(args.model_dir) / "model.pth") if args.model_dir else "",
             dir_digest(args.graph) if args.graph else "", dir_digest(args.data_dir),
             *(f"{k}={getattr(args, k, None)}" for k in (*CONFIG_KEYS, "backend", "lattice",
                                                          "ps_hmm", "ps_lm", "ps_dict",
                                                          "ps_jsgf", "ps_lw")), *utts]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _lattice_config(args: argparse.Namespace):
    from speechlm.asr.ctc_lattice import LatticeDecodeConfig

    options = {"beam": args.search_beam, "lattice_beam": args.lattice_beam,
               "lm_scale": args.lm_scale, "lm_weight": args.lm_weight,
               "nbest": args.rescore_nbest, "ctc_weight": args.ctc_weight,
               "penalty": args.penalty}
    config = LatticeDecodeConfig.from_dict({k: v for k, v in options.items() if v is not None})
    # the rescored list must hold at least the N-best asked for
    if config.nbest < args.nbest:
        config = LatticeDecodeConfig.from_dict({**config.__dict__, "nbest": args.nbest})
    return config


def _recognizer(args: argparse.Namespace, d, utts: list[str], job: int):
    """(items, decode, posterior_am_scale) for this job.

    ``items`` yields ``(utt, input)``; ``decode(utt, input)`` returns ``(hypotheses best
    first, lattice or None)``; ``input`` is None for an utterance with no features.
    """
    if args.backend == "pocketsphinx":
        from speechlm.asr.pocketsphinx_asr import PocketSphinxASR
        from speechlm.data.features import iter_utterance_audio

        ps = PocketSphinxASR(hmm=args.ps_hmm, lm=args.ps_lm, dictionary=args.ps_dict,
                             jsgf=args.ps_jsgf, lw=args.ps_lw, nbest=max(args.nbest, 1))
        return (iter_utterance_audio(d, utts, ps.sample_rate),
                lambda utt, x: ps(x, utt=utt), ps.posterior_am_scale)

    import kaldiio

    from speechlm.asr.espnet_asr import EspnetASR
    from speechlm.data.features import compute_feats_for_data_dir, job_file

    asr = EspnetASR(args.model_dir, beam_size=args.beam, ctc_weight=args.ctc_weight,
                    penalty=args.penalty, nbest=args.nbest, device=args.device)
    feats_dir = Path(args.out) / "feats"
    compute_feats_for_data_dir(args.data_dir, feats_dir, asr.fbank, nj=args.nj, job=job,
                               progress=False, utts=utts)
    feats = kaldiio.load_scp(str(job_file(feats_dir, "feats.scp", job)))
    # A model trained with speaker CMN gets each speaker's mean over all their utterances
    # (the job holds whole speakers: see _split); speakers too short for a mean of their
    # own (e.g. one utterance each, when utt2spk was made up) are padded with the job's mean.
    means = {} if asr.cmn is None else asr.cmn.speaker_means(
        ((u, feats[u]) for u in utts if u in feats), d.utt2spk, set_prior=True)
    # An utterance too short for one frame has no features: it decodes to nothing.
    items = ((utt, asr.normalize(feats[utt], means.get(d.utt2spk[utt])) if utt in feats
              else None) for utt in utts)
    if not args.lattice:
        return items, lambda utt, f: ([] if f is None else asr.decode_features(f), None), 1.0
    from speechlm.asr.ctc_graph import DecodingGraph
    from speechlm.asr.ctc_lattice import EspnetLatticeASR

    config = _lattice_config(args)
    lattice_asr = EspnetLatticeASR(asr, DecodingGraph.read(args.graph), config)

    def decode(utt, f):
        if f is None:
            return [], None
        hyps, lattice = lattice_asr(f, utt)
        return hyps[:args.nbest], lattice

    # lattices keep unscaled scores; the search weighed acoustics by 1 / lm_scale
    return items, decode, 1.0 / config.lm_scale


def _speaker_cmn(args: argparse.Namespace) -> bool:
    """Whether the model normalises features per speaker (its frontend.yaml says so)."""
    if args.backend != "espnet":
        return False
    from speechlm.asr import model_dir as md

    cmn = md.read_yaml(Path(args.model_dir) / md.FRONTEND).get("cmn") or {}
    return cmn.get("type", "none") == "speaker"


def _split(args: argparse.Namespace, d, job: int) -> list[str]:
    """This job's utterances: whole speakers when the model uses speaker CMN (so each
    speaker's mean is taken over all of their utterances), else Kaldi's contiguous split."""
    if _speaker_cmn(args):
        return split_by_speaker(d.utterances, d.utt2spk, args.nj, job)
    return split_utterances(d.utterances, args.nj, job)


def decode_job(args: argparse.Namespace, job: int) -> None:
    """Decode job ``job`` of ``args.nj`` into OUT/splitN/J/ (text, nbest.jsonl, lattices)."""
    out = Path(args.out)
    d = read_data_dir(args.data_dir)
    utts = _split(args, d, job)
    job_dir = _job_dir(out, args.nj, job)
    done = job_dir / ".done"
    stamp = _fingerprint(args, utts)
    if done.is_file() and done.read_text().strip() == stamp:
        print(f"decode: job {job}/{args.nj} already done ({job_dir})", file=sys.stderr)
        return
    import torch

    # Parallel jobs share the cores: with every job on all cores, the small matrix ops of
    # beam search spend their time fighting over threads (measured 2.6 s vs 0.02 s per digit).
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.nj))
    items, decode, am_scale = _recognizer(args, d, utts, job)

    job_dir.mkdir(parents=True, exist_ok=True)
    done.unlink(missing_ok=True)
    writer = _JobWriter(job_dir, lattice=args.lattice, am_scale=am_scale, refs=d.text)
    with writer:
        for utt, x in tqdm(items, total=len(utts), desc=f"decode {job}/{args.nj}",
                           mininterval=2.0):
            hyps, lattice = decode(utt, x)
            writer.add(utt, hyps, lattice)
    done.write_text(stamp + "\n")


def merge_jobs(out: Path, nj: int, *, lattice: bool = False) -> None:
    """Join finished job outputs into sorted OUT/text, OUT/nbest.jsonl (and lattice files)."""
    job_dirs = [_job_dir(out, nj, job) for job in range(1, nj + 1)]
    for job, job_dir in enumerate(job_dirs, start=1):
        if not (job_dir / ".done").is_file():
            raise RuntimeError(f"decode job {job}/{nj} has not finished: no {job_dir}/.done")
    merge_job_outputs(out, job_dirs, lattice=lattice)


def _check_backend(args: argparse.Namespace) -> None:
    """Options that only make sense together; ValueError names the missing one."""
    from speechlm.asr.model_dir import check_model_dir

    if args.backend == "espnet":
        if not args.model_dir:
            raise ValueError("the espnet backend needs --model-dir")
        check_model_dir(args.model_dir)
        if args.lattice:
            if not args.graph:
                raise ValueError("--lattice with the espnet backend needs --graph (a graph dir "
                                 "from speechlm make-graph)")
            from speechlm.asr.ctc_graph import DecodingGraph

            DecodingGraph.read(args.graph)  # fails early naming a missing file
    elif args.model_dir or args.graph:
        raise ValueError("--model-dir and --graph are for the espnet backend; pocketsphinx "
                         "takes --ps-hmm/--ps-lm/--ps-dict/--ps-jsgf")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    try:
        _apply_config(args)
    except ValueError as e:
        print(f"decode: {e}", file=sys.stderr)
        return 2
    if args.nj < 1 or (args.job is not None and not 1 <= args.job <= args.nj):
        print(f"decode: need 1 <= --job <= --nj, got --job {args.job} --nj {args.nj}",
              file=sys.stderr)
        return 2
    if args.merge_only:
        merge_jobs(out, args.nj, lattice=args.lattice)
        return 0
    try:
        _check_backend(args)
        if args.job is None:
            args.data_dir = str(_with_speaker_maps(Path(args.data_dir), out))
            # Validate once, up front, so that bad input fails before any long work.
            validate_data_dir(args.data_dir, check_audio=True, require_text=False)
    except ValueError as e:  # ModelDirError, DataDirError: messages name files and utts
        print(f"decode: {e}", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    if args.job is not None:
        decode_job(args, args.job)
        return 0
    # Each job process pays ESPnet's ~10 s import: don't split small sets into jobs.
    d = read_data_dir(args.data_dir)
    n_utts = len(d.utterances)
    nj = min(args.nj, max(1, n_utts // MIN_UTTS_PER_JOB))
    if _speaker_cmn(args):  # jobs hold whole speakers
        nj = min(nj, len(set(d.utt2spk.values())))
    if nj != args.nj:
        print(f"decode: {n_utts} utterances: using {nj} job(s) instead of {args.nj}",
              file=sys.stderr)
        args.nj = nj
    if args.nj == 1:
        decode_job(args, 1)
    else:
        from speechlm.bin.launch import run_local

        argv = [sys.executable, "-m", "speechlm.bin.decode", "--backend", args.backend,
                "--data-dir", args.data_dir, "--out", args.out, "--nj", str(args.nj),
                "--job", "JOB", "--nbest", str(args.nbest), "--device", args.device]
        if args.lattice:
            argv.append("--lattice")
        # --config is already applied to args: pass the resolved values, not the file
        for key in ("model_dir", "graph", *CONFIG_KEYS, "ps_hmm", "ps_lm", "ps_dict",
                    "ps_jsgf", "ps_lw"):
            value = getattr(args, key)
            if value is not None and key != "nbest":
                argv += ["--" + key.replace("_", "-"), str(value)]
        rc = run_local(f"JOB=1:{args.nj}", str(out / "log" / "decode.JOB.log"), argv)
        if rc != 0:
            return rc
    merge_jobs(out, args.nj, lattice=args.lattice)
    print(f"decode: {n_utts} utterances -> {out}/text, {out}/nbest.jsonl "
          f"(cmd: {' '.join(shlex.quote(a) for a in sys.argv)})", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return command_main("speechlm decode", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
