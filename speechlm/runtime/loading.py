"""Checks on a local model directory and on a tokenizer/model pair, with errors that name
the path or the field, before transformers gets a chance to fail obscurely (or to try
the network).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model")
DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"``/``"bfloat16"``/``"float16"`` (or a torch dtype) -> torch dtype."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"dtype must be one of float32, bfloat16, float16, got {dtype}")
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def parse_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device: cannot parse {device!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return dev


def check_model_dir(path: str | Path) -> Path:
    """Raise unless ``path`` holds config, weights and tokenizer files of a causal LM.

    Raises:
        FileNotFoundError: the directory, ``config.json``, the weights (or a shard listed
            in the weight index) or the tokenizer files are missing.
        ValueError: ``config.json`` is not JSON or has no ``model_type``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model directory {path} does not exist (loading is local only)")
    if not path.is_dir():
        raise FileNotFoundError(f"model path {path} is not a directory")
    config_path = path / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} is missing: not a transformers model directory")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{config_path} is not valid JSON: {e}") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise ValueError(f"{config_path} has no 'model_type' field")
    index = next((path / f for f in WEIGHT_INDEXES if (path / f).is_file()), None)
    if index is not None:
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (json.JSONDecodeError, KeyError, AttributeError) as e:
            raise ValueError(f"{index}: bad weight index ('weight_map'): {e}") from None
        missing = sorted(s for s in shards if not (path / s).is_file())
        if missing:
            raise FileNotFoundError(f"{index} lists missing shard(s) {missing} in {path}")
    elif not any((path / f).is_file() for f in WEIGHT_FILES):
        raise FileNotFoundError(
            f"no weights in {path}: expected one of {WEIGHT_FILES + WEIGHT_INDEXES}"
        )
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise FileNotFoundError(f"no tokenizer in {path}: expected one of {TOKENIZER_FILES}")
    if (
        (path / "vocab.json").is_file()
        and not (path / "tokenizer.json").is_file()
        and not (path / "merges.txt").is_file()
    ):
        raise FileNotFoundError(f"{path / 'merges.txt'} is missing (vocab.json needs it)")
    return path


def context_length(config: Any) -> int:
    """The model's maximum number of positions (``max_position_embeddings`` / ``n_positions``)."""
    text = config.get_text_config(decoder=True)
    for field in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(text, field, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ValueError(f"config ({text.model_type}) has no max_position_embeddings / n_positions")


def check_vocab(tokenizer: Any, config: Any) -> None:
    """Raise ``ValueError`` when the tokenizer can produce ids the model has no row for."""
    vocab_size = config.get_text_config(decoder=True).vocab_size
    n = len(tokenizer)
    if n > vocab_size:
        raise ValueError(
            f"tokenizer/model vocab mismatch: the tokenizer has {n} tokens but the model's "
            f"config.vocab_size is {vocab_size}"
        )
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        tid = getattr(tokenizer, name, None)
        if tid is not None and not 0 <= tid < vocab_size:
            raise ValueError(
                f"tokenizer {name}={tid} is outside the model's vocab_size {vocab_size}"
            )
