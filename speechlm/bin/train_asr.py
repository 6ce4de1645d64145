r"""Train an ESPnet2 ASR model (CTC + attention) on extracted features; export a model dir.

    speechlm train-asr --train-data data/train_sp --train-feats dump/train_sp \
        --valid-data data/dev --valid-feats dump/dev \
        --config conf/train_asr.yaml --fbank-config conf/fbank.yaml --exp exp/asr

Transcripts come from the Kaldi data dirs' ``text``; features from the feature dirs'
``feats.scp`` and ``utt2num_frames`` (as ``speechlm compute-fbank`` writes them). A feature
dir made with ``--cmn speaker`` has a ``cmn.yaml``; it goes into the model dir's
``frontend.yaml`` so decoding normalises the same way.
``--cmvn`` names global CMVN stats (default TRAIN_FEATS/cmvn.npz). Steps, each skipped
when already done:

  1. token list (characters, ESPnet's ``<blank> <unk> ... <sos/eos>`` layout)
  2. shape files for ESPnet's batch sampler
  3. ``python -m espnet2.bin.asr_train`` (ESPnet's own trainer; ``--resume true``, so a killed
     run continues from EXP/checkpoint.pth); the exact command is saved as EXP/run.sh
  4. export of the averaged best checkpoints as EXP/model, a self-contained model dir
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from speechlm.asr.model_dir import export_model_dir
from speechlm.bin import command_main
from speechlm.core.errors import UsageError
from speechlm.core.hashing import file_sha256

SPACE = "<space>"
SPECIAL_FIRST = ["<blank>", "<unk>"]
SPECIAL_LAST = ["<sos/eos>"]


def char_tokens(text: str) -> list[str]:
    """ESPnet's char tokenization: one token per character, spaces as ``<space>``."""
    return [SPACE if c == " " else c for c in " ".join(text.split())]


def read_text(path: Path) -> dict[str, str]:
    out = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\n").split(maxsplit=1)
            if not parts:
                continue
            if len(parts) == 1 or not parts[1].strip():
                raise ValueError(f"{path}:{lineno}: utterance {parts[0]!r} has no transcript")
            out[parts[0]] = parts[1]
    return out


def write_token_list(train_text: dict[str, str], path: Path) -> list[str]:
    chars = sorted({t for text in train_text.values() for t in char_tokens(text)})
    tokens = SPECIAL_FIRST + [c for c in chars if c not in SPECIAL_FIRST] + SPECIAL_LAST
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return tokens


def write_shapes(feat_dir: Path, text: dict[str, str], vocab: int, out_dir: Path,
                 feat_dim: int = 80) -> None:
    """ESPnet's shape files: ``utt frames,dim`` and ``utt tokens,vocab``, same utterances."""
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = {}
    with open(feat_dir / "utt2num_frames", encoding="utf-8") as f:
        for line in f:
            utt, n = line.split()
            frames[utt] = int(n)
    missing = sorted(set(text) - set(frames))
    if missing:
        raise ValueError(f"{feat_dir}: {len(missing)} utterance(s) in text have no features, "
                         f"e.g. {', '.join(missing[:3])}")
    with open(out_dir / "speech_shape", "w") as fs, open(out_dir / "text_shape.char", "w") as ft:
        for utt in sorted(text):
            fs.write(f"{utt} {frames[utt]},{feat_dim}\n")
            ft.write(f"{utt} {len(char_tokens(text[utt]))},{vocab}\n")


def _feat_dim(feat_dir: Path) -> int:
    """Dimension of the features in ``feat_dir/feats.scp`` (its first matrix)."""
    import kaldiio

    with open(feat_dir / "feats.scp", encoding="utf-8") as f:
        first = f.readline().split(maxsplit=1)
    if len(first) != 2:
        raise ValueError(f"{feat_dir}/feats.scp: empty or malformed first line")
    return int(kaldiio.load_mat(first[1].strip()).shape[1])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train-data", required=True, type=Path, help="Kaldi data dir")
    parser.add_argument("--train-feats", required=True, type=Path, help="its feature dir")
    parser.add_argument("--valid-data", required=True, type=Path)
    parser.add_argument("--valid-feats", required=True, type=Path)
    parser.add_argument("--config", required=True, type=Path, help="ESPnet training YAML")
    parser.add_argument("--fbank-config", type=Path, default=None,
                        help="YAML of the features' settings: FbankConfig fields, or "
                             "type: whisper_encoder (speechlm.asr.whisper_features)")
    parser.add_argument("--cmvn", type=Path, default=None, help="global CMVN stats (.npz)")
    parser.add_argument("--exp", required=True, type=Path, help="experiment folder")
    parser.add_argument("--normalize", choices=("global_mvn", "utterance_mvn"),
                        default="global_mvn",
                        help="feature normalization in the model: global CMVN stats "
                             "(--cmvn) or per-utterance mean subtraction")
    parser.add_argument("--decode-config", type=Path, default=None,
                        help="the recipe's decode YAML (speechlm decode --config); exported "
                             "as the model dir's decode.yaml, so a plain `speechlm decode "
                             "--model-dir` decodes as the recipe did")
    parser.add_argument("--ngpu", type=int, default=0,
                        help="GPUs; with more than one ESPnet trains data-parallel, one "
                             "process per GPU (DDP, NCCL)")
    parser.add_argument("--cpu-procs", type=int, default=1,
                        help="without GPUs: data-parallel training processes on the CPU "
                             "(DDP over gloo, started by torch.distributed.run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--espnet-args", default="",
                        help="extra options for espnet2.bin.asr_train, one quoted string")


def _decode_defaults(path: Path | None) -> dict:
    """The model-default keys of a recipe's decode YAML, checked as ``speechlm decode``
    checks it (unknown keys and bad values name the file)."""
    if path is None:
        return {}
    from speechlm.asr.decode_config import MODEL_DEFAULT_KEYS, DecodeConfig

    config = DecodeConfig.from_yaml(path, model=".")
    keys = (*MODEL_DEFAULT_KEYS, "nbest")
    return {k: getattr(config, k) for k in keys if getattr(config, k) is not None}


def _feature_cmn(train_feats: Path, valid_feats: Path) -> dict | None:
    """The speaker CMN settings of the training features (their cmn.yaml), or None.

    Raises:
        ValueError: the validation features are normalised differently (named).
    """
    def read(d: Path) -> dict | None:
        path = d / "cmn.yaml"
        if not path.is_file():
            return None
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)

    train, valid = read(train_feats), read(valid_feats)
    if train != valid:
        raise ValueError(f"{train_feats}/cmn.yaml and {valid_feats}/cmn.yaml differ (or one "
                         f"is missing): compute the validation features with --cmn speaker "
                         f"--cmn-from {train_feats}/cmn.yaml")
    return train


def run(args: argparse.Namespace) -> int:
    from speechlm.asr.whisper_features import feature_config_from_dict, frontend_entry
    from speechlm.data.features import FbankConfig

    exp: Path = args.exp
    exp.mkdir(parents=True, exist_ok=True)
    cmvn = args.cmvn or args.train_feats / "cmvn.npz"
    for path in (args.train_data / "text", args.train_feats / "feats.scp",
                 args.valid_data / "text", args.valid_feats / "feats.scp", cmvn, args.config):
        if not Path(path).is_file():
            print(f"train-asr: missing {path}", file=sys.stderr)
            return 1
    fbank = FbankConfig()
    if args.fbank_config:
        with open(args.fbank_config, encoding="utf-8") as f:
            fbank = feature_config_from_dict(yaml.safe_load(f) or {})

    try:
        cmn = _feature_cmn(args.train_feats, args.valid_feats)
    except ValueError as e:
        print(f"train-asr: {e}", file=sys.stderr)
        return 1

    # 1-2. tokens and shapes (cheap: always rewritten, so they follow the data)
    train_text = read_text(args.train_data / "text")
    tokens = write_token_list(train_text, exp / "tokens.txt")
    dim = getattr(fbank, "num_mel_bins", None) or _feat_dim(args.train_feats)
    write_shapes(args.train_feats, train_text, len(tokens), exp / "shapes" / "train", dim)
    write_shapes(args.valid_feats, read_text(args.valid_data / "text"), len(tokens),
                 exp / "shapes" / "valid", dim)

    # 3. ESPnet training
    if args.normalize == "global_mvn":
        normalize = ["--normalize", "global_mvn", "--normalize_conf", f"stats_file={cmvn}"]
    else:  # per-utterance mean subtraction: removes each recording's gain and channel
        normalize = ["--normalize", "utterance_mvn", "--normalize_conf", "norm_vars=false"]
    shapes = exp / "shapes"
    if args.cpu_procs < 1 or (args.cpu_procs > 1 and args.ngpu > 0):
        raise UsageError(f"--cpu-procs {args.cpu_procs}: give a number >= 1, and more than "
                         "one only without GPUs (--ngpu 0)")
    # CPU DDP: torch.distributed.run sets RANK/WORLD_SIZE/MASTER_* for each process, and
    # ESPnet, told not to spawn processes itself, joins them over gloo.
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 "--nproc-per-node", str(args.cpu_procs), "-m"] if args.cpu_procs > 1
                else [sys.executable, "-m"])
    ddp = (["--multiprocessing_distributed", "false", "--dist_backend", "gloo"]
           if args.cpu_procs > 1 else [])
    cmd = [*launcher, "speechlm.core.quiet", "espnet2.bin.asr_train", *ddp,
           "--config", str(args.config), "--output_dir", str(exp),
           "--ngpu", str(args.ngpu), "--seed", str(args.seed), "--resume", "true",
           "--use_preprocessor", "true", "--token_type", "char",
           "--token_list", str(exp / "tokens.txt"),
           "--non_linguistic_symbols", "none", "--cleaner", "none", "--g2p", "none",
           "--input_size", str(dim),
           *normalize,
           "--train_data_path_and_name_and_type", f"{args.train_feats}/feats.scp,speech,kaldi_ark",
           "--train_data_path_and_name_and_type", f"{args.train_data}/text,text,text",
           "--valid_data_path_and_name_and_type", f"{args.valid_feats}/feats.scp,speech,kaldi_ark",
           "--valid_data_path_and_name_and_type", f"{args.valid_data}/text,text,text",
           "--train_shape_file", str(shapes / "train" / "speech_shape"),
           "--train_shape_file", str(shapes / "train" / "text_shape.char"),
           "--valid_shape_file", str(shapes / "valid" / "speech_shape"),
           "--valid_shape_file", str(shapes / "valid" / "text_shape.char"),
           "--fold_length", "800", "--fold_length", "150",
           "--use_tensorboard", "false", "--use_matplotlib", "true", "--num_att_plot", "0",
           *shlex.split(args.espnet_args)]
    (exp / "run.sh").write_text(
        "#!/usr/bin/env bash\n# Resume or repeat this training (ESPnet resumes from "
        "checkpoint.pth):\n" + " ".join(shlex.quote(c) for c in cmd) + "\n")
    averaged = exp / "valid.acc.ave.pth"
    if not averaged.exists():
        print(f"train-asr: training, log in {exp}/train.log; resume with: bash {exp}/run.sh",
              file=sys.stderr)
        with open(exp / "train.log", "a", encoding="utf-8") as log:
            rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
        if rc != 0 or not averaged.exists():
            print(f"train-asr: ESPnet training failed (exit {rc}); see {exp}/train.log",
                  file=sys.stderr)
            return 1

    # 4. export, unless the model dir already holds these averaged weights
    model_dir = exp / "model"
    frontend = frontend_entry(fbank)
    if cmn is not None:
        frontend["cmn"] = cmn
    decode = _decode_defaults(args.decode_config)
    stamp = (f"{file_sha256(averaged)} {file_sha256(cmvn)} {json.dumps(frontend, sort_keys=True)}"
             f" {json.dumps(decode, sort_keys=True)}")
    done = exp / ".export_done"
    if done.is_file() and done.read_text().strip() == stamp and (model_dir / "model.pth").is_file():
        print(f"train-asr: already done: model dir {model_dir}", file=sys.stderr)
        return 0
    with open(exp / "config.yaml", encoding="utf-8") as f:
        n_epochs = (yaml.safe_load(f) or {}).get("max_epoch")
    meta = {"created": datetime.datetime.now().isoformat(timespec="seconds"),
            "train_data": str(args.train_data), "valid_data": str(args.valid_data),
            "config": str(args.config), "max_epoch": n_epochs,
            "weights": os.path.realpath(averaged)}
    model = export_model_dir(train_config=exp / "config.yaml", weights=averaged,
                             cmvn_stats=cmvn, frontend=frontend,
                             out_dir=model_dir, decode=decode, meta=meta)
    done.write_text(stamp + "\n")
    print(f"train-asr: model dir {model} ({json.dumps(meta)})", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return command_main("speechlm train-asr", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
