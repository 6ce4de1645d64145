"""A dequantized copy of a GGUF model, kept so the next load skips the conversion.

transformers reads a ``.gguf`` file three times (tokenizer, config, weights), parsing its
whole vocabulary each time, and dequantizes every tensor: about 15 s for SmolLM2-135M on
one CPU core, paid by every ``speechlm slu predict`` call and every worker of ``--nj``.
The same model saved as a plain transformers directory loads in about a second.

The copy goes to ``$SPEECHLM_GGUF_CACHE`` (default ``$XDG_CACHE_HOME/speechlm/gguf``, i.e.
``~/.cache/speechlm/gguf``; ``off`` disables it), one directory per GGUF file, dtype and
transformers version, keyed by the file's resolved path, size and modification time, so a
replaced file is converted again. Models whose dequantized weights exceed
``MAX_CACHED_BYTES`` (a 7B model: 28 GB in float32) are not copied. A copy is written to a
temporary directory and renamed into place: a directory that exists is complete, and two
processes converting at once (``--nj`` workers) leave one copy.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

CACHE_ENV = "SPEECHLM_GGUF_CACHE"
MAX_CACHED_BYTES = 4 << 30


def cache_dir(gguf_path: Path, dtype: torch.dtype) -> Path | None:
    """Where the dequantized copy of ``gguf_path`` in ``dtype`` lives (None: caching off)."""
    import transformers

    setting = os.environ.get(CACHE_ENV, "")
    if setting.lower() == "off":
        return None
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    root = Path(setting) if setting else Path(base) / "speechlm" / "gguf"
    path = gguf_path.resolve()
    st = path.stat()
    kind = str(dtype).removeprefix("torch.")
    key = f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{kind}\0{transformers.__version__}"
    return root / f"{path.stem}-{kind}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def export_plain(model: Any, tokenizer: Any, out: Path) -> None:
    """Save a GGUF-loaded model as a plain transformers directory (its dequantized weights;
    transformers refuses ``save_pretrained`` on a model it loaded from GGUF)."""
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=model.dtype)
    plain.load_state_dict(model.state_dict())
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)


def keep_copy(model: Any, tokenizer: Any, dest: Path) -> bool:
    """Write the dequantized copy to ``dest``; False when it is too big or cannot be written
    (the load goes on from the GGUF file: the cache only saves time)."""
    n_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    if n_bytes > MAX_CACHED_BYTES:
        logger.info("not caching a dequantized copy of %.1f GB (over %.1f GB)",
                    n_bytes / 1e9, MAX_CACHED_BYTES / 1e9)
        return False
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    except OSError as e:
        logger.warning("GGUF cache %s not writable (%s): set %s=off to stop trying",
                       dest.parent, e, CACHE_ENV)
        return False
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would hide a shared cache
        export_plain(model, tokenizer, tmp)
        os.rename(tmp, dest)  # atomic: dest is complete or absent
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not dest.is_dir():  # not another process's finished copy: a real failure
            logger.warning("could not write the GGUF cache %s", dest, exc_info=True)
            return False
    logger.info("dequantized copy cached in %s (%.0f MB; %s=off disables)",
                dest, n_bytes / 1e6, CACHE_ENV)
    return True
