"""Where an LLM's files are, and checks on them, with errors that name the path or the
field, before transformers gets a chance to fail obscurely (or to try the network).

``resolve_model`` turns what a user passes to ``LLM.from_pretrained`` (a catalogue name
such as ``smollm2-135m-instruct``, a local transformers directory, or a local ``.gguf``
file) into a :class:`ModelSource`; ``load_model_and_tokenizer`` loads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from speechlm.core import catalogue
from speechlm.core.catalogue import ModelFileError
from speechlm.core.quiet import no_loading_bars

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


@dataclass(frozen=True)
class ModelSource:
    """What ``from_pretrained`` hands transformers.

    Args:
        path: the directory (``from_pretrained(path, ...)``).
        gguf_file: the GGUF file's name inside ``path`` (None: a transformers directory);
            transformers dequantizes its weights on load.
        name: the catalogue name, when it came from the catalogue.
    """

    path: Path
    gguf_file: str | None = None
    name: str | None = None


def resolve_model(name_or_path: str | Path) -> ModelSource:
    """A catalogue LLM name, a local transformers directory or a local ``.gguf`` file.

    A catalogue name wins over a same-named relative path; a name that is neither gets the
    list of catalogue LLMs.

    Raises:
        FileNotFoundError: neither a catalogue name nor an existing path (lists the names);
            a directory without config, weights or tokenizer.
        ValueError: a catalogue model that is not an LLM; bad ``config.json``.
        catalogue.ModelNotInstalled: its package is missing (names the pip command).
        catalogue.ModelFileError: a partial or corrupt model file (names the file).
    """
    text = str(name_or_path)
    if text in catalogue.MODELS:
        card = catalogue.get(text)
        if card.task != "llm":
            raise ValueError(f"{text!r} is a {card.task} model ({card.format}), not an LLM; "
                             f"catalogue LLMs: {', '.join(catalogue.names('llm'))}")
        path = catalogue.locate(text)  # checks the files' recorded sizes and headers
        return ModelSource(path, card.extra.get("gguf_file"), text)
    path = Path(name_or_path)
    if not path.exists():
        raise FileNotFoundError(
            f"{text} is neither a catalogue LLM ({', '.join(catalogue.names('llm'))}) nor an "
            "existing model directory or .gguf file (loading is local only)")
    if path.is_file():
        if path.suffix != ".gguf":
            raise FileNotFoundError(f"model path {path} is a file but not a .gguf file")
        check_gguf_file(path)
        return ModelSource(path.parent, path.name)
    if not (path / "config.json").exists():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:  # a directory holding one GGUF file, as the pip package does
            check_gguf_file(ggufs[0])
            return ModelSource(path, ggufs[0].name)
    return ModelSource(check_model_dir(path))


def check_gguf_file(path: str | Path) -> None:
    """Raise ``ModelFileError`` unless ``path`` is a whole GGUF file.

    Checks the magic bytes, then reads the header (metadata and tensor table, not the
    tensors) for where the last tensor ends: a truncated file is caught in milliseconds
    instead of halfway through transformers' conversion (``gguf.GGUFReader`` would take
    seconds: it decodes every vocabulary string).
    """
    path = Path(path)
    catalogue.check_weights_file(path)  # magic bytes
    size = path.stat().st_size
    try:
        end = gguf_data_end(path)
    except (EOFError, ValueError, KeyError) as e:
        raise ModelFileError(f"{path}: unreadable GGUF header (truncated or corrupt: {e})"
                             ) from None
    if end > size:
        raise ModelFileError(f"{path}: its tensors end at byte {end} but the file has {size} "
                             "bytes (truncated)")


# GGUF metadata value types -> byte size of a scalar (8 = string, 9 = array: variable)
_GGUF_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def gguf_data_end(path: str | Path) -> int:
    """Byte offset where the last tensor of a GGUF file (v2/v3) ends, from its header."""
    import struct

    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    with open(path, "rb") as f:

        def read(n: int) -> bytes:
            b = f.read(n)
            if len(b) != n:
                raise EOFError(f"header ends early at byte {f.tell()}")
            return b

        def u32() -> int:
            return struct.unpack("<I", read(4))[0]

        def u64() -> int:
            return struct.unpack("<Q", read(8))[0]

        def string() -> bytes:
            return read(u64())

        def skip_value(vtype: int) -> Any:
            if vtype == 8:
                return string()
            if vtype == 9:
                itype, n = u32(), u64()
                if itype in _GGUF_SCALAR:
                    f.seek(n * _GGUF_SCALAR[itype], 1)
                else:
                    for _ in range(n):
                        skip_value(itype)
                return None
            if vtype not in _GGUF_SCALAR:
                raise ValueError(f"unknown metadata value type {vtype}")
            return read(_GGUF_SCALAR[vtype])

        read(4)
        version = u32()
        if version not in (2, 3):
            raise ValueError(f"GGUF version {version} (2 and 3 are known)")
        n_tensors, n_kv = u64(), u64()
        alignment = 32
        for _ in range(n_kv):
            key, vtype = string(), u32()
            value = skip_value(vtype)
            if key == b"general.alignment" and value is not None:
                alignment = int.from_bytes(value, "little")
        end = 0
        for _ in range(n_tensors):
            string()
            dims = [u64() for _ in range(u32())]
            qtype, offset = u32(), u64()
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(qtype)]
            n = 1
            for d in dims:
                n *= d
            end = max(end, offset + n // block * type_size)
        start = f.tell()
    start += -start % alignment  # tensor data begins at the next aligned offset
    return start + end


def load_model_and_tokenizer(source: ModelSource, dtype: torch.dtype) -> tuple[Any, Any]:
    """Load a :class:`ModelSource` with transformers, local files only.

    GGUF weights are dequantized to ``dtype``, once: the dequantized copy is kept
    (``speechlm.runtime.gguf_cache``) and later loads read it. A tokenizer without a pad
    token gets its EOS token as pad: batches are padded with it, and the runtime masks
    padding, so no new embedding row is added and no output changes.
    """
    if source.gguf_file:
        from speechlm.runtime import gguf_cache

        cached = gguf_cache.cache_dir(source.path / source.gguf_file, dtype)
        if cached is not None and cached.is_dir():
            return _load(ModelSource(cached), dtype)
        model, tokenizer = _load(source, dtype)
        if cached is not None and gguf_cache.keep_copy(model, tokenizer, cached):
            # every load returns the same plain model, whether it converted or not
            return _load(ModelSource(cached), dtype)
        return model, tokenizer
    return _load(source, dtype)


def _load(source: ModelSource, dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    extra = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    with no_loading_bars():
        tokenizer = AutoTokenizer.from_pretrained(source.path, local_files_only=True, **extra)
        model = AutoModelForCausalLM.from_pretrained(
            source.path, dtype=dtype, local_files_only=True, attn_implementation="sdpa", **extra
        )
    set_pad_token(tokenizer)
    return model, tokenizer


def set_pad_token(tokenizer: Any) -> None:
    """Give a tokenizer without a pad token its EOS (or else UNK) token as pad."""
    if tokenizer.pad_token_id is not None:
        return
    for token in (tokenizer.eos_token, tokenizer.unk_token):
        if token is not None:
            tokenizer.pad_token = token
            return
