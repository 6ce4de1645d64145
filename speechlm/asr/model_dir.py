"""A self-contained ASR model directory: everything needed to decode, nothing else.

Layout (all paths relative, so the directory can be copied anywhere)::

    MODEL_DIR/
      config.yaml        ESPnet2 ASR training config (token list inline)
      model.pth          weights (ESPnet state dict, e.g. averaged best checkpoints)
      feats_stats.npz    global CMVN stats (count, sum, sum_square), ESPnet's layout
      frontend.yaml      feature extraction settings (speechlm FbankConfig)
      tokens.txt         one token per line, index = line number
      decode.yaml        default decoding options (beam_size, ctc_weight, nbest...)
      meta.json          provenance: training data, date, speechlm version, parameters
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import yaml

CONFIG = "config.yaml"
WEIGHTS = "model.pth"
CMVN = "feats_stats.npz"
FRONTEND = "frontend.yaml"
TOKENS = "tokens.txt"
DECODE = "decode.yaml"
META = "meta.json"
REQUIRED = (CONFIG, WEIGHTS, CMVN, FRONTEND, TOKENS)


class ModelDirError(ValueError):
    """A model directory is missing a file or holds one that cannot be used."""


def check_model_dir(model_dir: str | os.PathLike) -> Path:
    """Return ``model_dir`` as a Path after checking that every required file is there.

    Raises:
        ModelDirError: naming the directory and each missing file.
    """
    path = Path(model_dir)
    if not path.is_dir():
        raise ModelDirError(f"model dir {path} does not exist or is not a directory")
    missing = [name for name in REQUIRED if not (path / name).is_file()]
    if missing:
        raise ModelDirError(f"model dir {path} lacks {', '.join(missing)}; "
                            f"a model dir holds {', '.join(REQUIRED)}")
    return path


def export_model_dir(*, train_config: str | os.PathLike, weights: str | os.PathLike,
                     cmvn_stats: str | os.PathLike, frontend: dict, out_dir: str | os.PathLike,
                     decode: dict | None = None, meta: dict | None = None) -> Path:
    """Copy a finished ESPnet experiment into a self-contained model dir.

    The config's ``normalize_conf.stats_file`` is rewritten to the relative name
    ``feats_stats.npz`` and the token list is kept inline, so nothing points back into
    the experiment folder. Files are written into a temporary folder first and moved into
    place at the end, so an interrupted export never leaves a half-written model dir.
    """
    out = Path(out_dir)
    with open(train_config, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    token_list = config.get("token_list")
    if isinstance(token_list, str):
        with open(token_list, encoding="utf-8") as f:
            token_list = [line.rstrip("\n") for line in f]
        config["token_list"] = token_list
    if not isinstance(token_list, list) or not token_list:
        raise ModelDirError(f"{train_config}: no token_list found")
    if config.get("normalize") == "global_mvn":
        config["normalize_conf"] = dict(config.get("normalize_conf") or {}, stats_file=CMVN)
    # Training-only paths would point at the experiment folder: drop them.
    for key in ("train_data_path_and_name_and_type", "valid_data_path_and_name_and_type",
                "train_shape_file", "valid_shape_file", "output_dir"):
        config.pop(key, None)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        with open(tmp / CONFIG, "w", encoding="utf-8") as f:
            yaml.safe_dump(config, f, sort_keys=False, allow_unicode=True)
        shutil.copyfile(weights, tmp / WEIGHTS)
        shutil.copyfile(cmvn_stats, tmp / CMVN)
        with open(tmp / FRONTEND, "w", encoding="utf-8") as f:
            yaml.safe_dump(frontend, f, sort_keys=False)
        with open(tmp / TOKENS, "w", encoding="utf-8") as f:
            f.write("\n".join(token_list) + "\n")
        with open(tmp / DECODE, "w", encoding="utf-8") as f:
            yaml.safe_dump(decode or {}, f, sort_keys=False)
        with open(tmp / META, "w", encoding="utf-8") as f:
            json.dump(meta or {}, f, indent=2, sort_keys=True)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def resolved_config(model_dir: Path) -> dict:
    """The ESPnet config with the model dir's relative paths made absolute."""
    with open(model_dir / CONFIG, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    if config.get("normalize") == "global_mvn":
        config["normalize_conf"] = dict(config.get("normalize_conf") or {},
                                        stats_file=str((model_dir / CMVN).resolve()))
    return config


def read_yaml(path: Path) -> dict:
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}
