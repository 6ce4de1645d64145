"""Sentence embeddings from sentence-transformers checkpoints, with plain transformers.

A sentence-transformers model dir is a transformers model plus two small modules named in
``modules.json``: ``1_Pooling`` (its ``config.json`` says how token vectors are pooled: mean
for all-MiniLM-L6-v2 and all-mpnet-base-v2) and, for those two, ``Normalize`` (L2). We read
both instead of assuming them, and truncate at ``sentence_bert_config.json``'s
``max_seq_length`` (256 for MiniLM, 384 for mpnet), as sentence-transformers does, so the
vectors match the library's without depending on it.

>>> enc = SentenceEncoder("minilm-l6")  # doctest: +SKIP
>>> enc.embed(["turn on the lights", "play some jazz"]).shape  # doctest: +SKIP
(2, 384)
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from speechlm.core import catalogue
from speechlm.core.quiet import no_loading_bars
from speechlm.encoders.base import Encoder, EncoderError, empty, local_fingerprint

__all__ = ["SentenceEncoder"]

_POOLING_MODES = ("mean_tokens", "cls_token", "max_tokens", "mean_sqrt_len_tokens")


def _read_json(path: Path) -> dict | list | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _pooling_and_normalize(model_dir: Path) -> tuple[str, bool]:
    """The pooling mode and whether a Normalize module follows, from the model dir's modules.

    Raises:
        catalogue.ModelFileError: a pooling mode we do not implement (naming the file).
    """
    modules = _read_json(model_dir / "modules.json")
    if modules is None:  # a plain transformers dir: the usual sentence-transformers default
        return "mean_tokens", False
    pool_dir = next((m["path"] for m in modules if m["type"].endswith(".Pooling")), None)
    normalize = any(m["type"].endswith(".Normalize") for m in modules)
    if pool_dir is None:
        return "mean_tokens", normalize
    cfg_path = model_dir / pool_dir / "config.json"
    cfg = _read_json(cfg_path)
    if cfg is None:
        raise catalogue.ModelFileError(f"{cfg_path} is missing (named in modules.json)")
    on = [k.removeprefix("pooling_mode_") for k, v in cfg.items()
          if k.startswith("pooling_mode_") and v]
    if len(on) != 1 or on[0] not in _POOLING_MODES:
        raise catalogue.ModelFileError(f"{cfg_path}: pooling {on} is not one of "
                                       f"{', '.join(_POOLING_MODES)} (exactly one)")
    return on[0], normalize


def _max_length(model_dir: Path, tokenizer, config) -> int:
    st = _read_json(model_dir / "sentence_bert_config.json")
    if st and st.get("max_seq_length"):
        return int(st["max_seq_length"])
    # Without it: the tokenizer's limit, else the position table (RoBERTa-style models such
    # as MPNet keep 2 positions for the padding offset).
    limit = config.max_position_embeddings
    if config.model_type in ("roberta", "mpnet", "xlm-roberta"):
        limit -= 2
    return min(limit, tokenizer.model_max_length)


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool token vectors into one vector per sentence, ignoring padding.

    Args:
        hidden: (B, T, D) last hidden states.
        mask: (B, T) attention mask, 1 for real tokens.
        mode: one of ``mean_tokens``, ``cls_token``, ``max_tokens``, ``mean_sqrt_len_tokens``.

    Returns:
        (B, D).
    """
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    if mode == "cls_token":
        return hidden[:, 0]
    if mode == "max_tokens":
        return hidden.masked_fill(m == 0, float("-inf")).max(dim=1).values
    summed, count = (hidden * m).sum(dim=1), m.sum(dim=1).clamp(min=1e-9)  # (B, D), (B, 1)
    return summed / (count if mode == "mean_tokens" else count.sqrt())


class SentenceEncoder(Encoder):
    """Sentence embeddings from a sentence-transformers checkpoint (``minilm-l6``, 384-dim;
    ``mpnet-base``, 768-dim) or a user's model dir.

    Sentences are sorted by length and embedded ``batch_size`` at a time with padding (the
    attention mask keeps padding out), so a batched vector equals the one-at-a-time vector to
    float rounding (~1e-7).

    Args:
        name_or_dir: catalogue name or a local model dir (transformers files, optionally the
            sentence-transformers ``modules.json`` / ``1_Pooling``).
        batch_size: sentences per forward pass.
        device: torch device.
        max_length: truncate longer token sequences (default: the model dir's, see module doc).
    """

    kind = "sentence"

    def __init__(self, name_or_dir: str | Path = "minilm-l6", *, batch_size: int = 32,
                 device: str = "cpu", max_length: int | None = None) -> None:
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if catalogue.is_local_dir(name_or_dir):
            model_dir = Path(name_or_dir)
            if not (model_dir / "config.json").is_file():
                raise catalogue.ModelFileError(f"{model_dir}: no config.json (not a "
                                               "transformers model dir)")
            weights = next((p for p in sorted(model_dir.glob("*.safetensors"))), None) or \
                next(iter(sorted(model_dir.glob("*.bin"))), model_dir / "config.json")
            self.name, self.fingerprint = str(model_dir), local_fingerprint(weights)
        else:
            card = catalogue.get(str(name_or_dir))
            if card.task != "sentence":
                known = ", ".join(catalogue.names("sentence"))
                raise ValueError(f"model {card.name!r} is a {card.task} model, not a sentence "
                                 f"encoder; sentence encoders: {known}")
            model_dir = catalogue.locate(card.name)
            self.name = self.fingerprint = card.name
        with no_loading_bars():
            config = AutoConfig.from_pretrained(model_dir)
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
            self.model = AutoModel.from_pretrained(model_dir).to(device).eval()
        self.pooling, self.normalize = _pooling_and_normalize(model_dir)
        self.max_length = max_length or _max_length(model_dir, self.tokenizer, config)
        self.dim = int(config.hidden_size)
        self.batch_size, self.device = batch_size, device

    def content(self, item: str) -> bytes:
        return item.encode("utf-8")

    def embed(self, items: Sequence[str]) -> np.ndarray:
        """Embed sentences: (N, dim) float32, L2-normalised when the model says so."""
        for i, s in enumerate(items):
            if not isinstance(s, str):
                raise EncoderError(f"{self.name}: item {i} is a {type(s).__name__}, not a str")
        if not items:
            return empty(self.dim)
        # Longest first, as sentence-transformers does: batches of like lengths pad little.
        order = sorted(range(len(items)), key=lambda i: -len(items[i]))
        out = np.empty((len(items), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            batch = self.tokenizer([items[i] for i in idx], padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state  # (B, T, D)
                vec = pool(hidden, batch["attention_mask"], self.pooling)
                if self.normalize:
                    vec = torch.nn.functional.normalize(vec, p=2, dim=1)
            out[idx] = vec.float().cpu().numpy()
        return out
