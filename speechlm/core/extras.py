"""Optional dependencies, grouped as the extras of ``pyproject.toml``, imported on use.

The core install has no web server, demo UI, energy meter or LoRA trainer; code that needs
one imports it through ``require`` and a missing package is one line naming the extra:

>>> require("json", "serve").__name__
'json'
>>> require("no_such_module", "serve")
Traceback (most recent call last):
...
speechlm.core.extras.MissingExtra: no_such_module is not installed: pip install 'speechlm[serve]'
"""

from __future__ import annotations

import importlib
from types import ModuleType

# top-level import name -> the extra that installs it (pyproject [project.optional-dependencies])
EXTRAS: dict[str, str] = {
    "fastapi": "serve",
    "uvicorn": "serve",
    "multipart": "serve",
    "python_multipart": "serve",
    "gradio": "serve",
    "zeus": "energy",
    "peft": "llm",
    "accelerate": "llm",
    "sklearn": "llm",
    "sacrebleu": "llm",
    "faiss": "llm",
    "trl": "llm",
    "datasets": "llm",  # comes with trl
    "gguf": "models",
    "faster_whisper": "models",
    "ctranslate2": "models",
    "onnxruntime": "models",
    "piper": "models",
    "moonshine_voice": "models",
}


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def hint(module: str) -> str | None:
    """``pip install 'speechlm[<extra>]'`` for a missing module of an extra, else None."""
    extra = EXTRAS.get(module.split(".")[0])
    return f"pip install 'speechlm[{extra}]'" if extra else None


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise ``MissingExtra`` naming ``pip install 'speechlm[extra]'``."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise MissingExtra(f"{e.name or module} is not installed: "
                           f"pip install 'speechlm[{extra}]'") from e
