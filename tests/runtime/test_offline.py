"""The runtime loads only local files and leaves the process environment alone.

It used to set ``HF_HUB_OFFLINE`` at import, which also stopped a user's own downloads
elsewhere in the same process; now each load passes ``local_files_only=True`` instead.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys

import huggingface_hub.constants
import pytest

import speechlm.runtime.llm
from speechlm.runtime import LLM
from speechlm.testing.llm import save_tiny_model, tiny_config, tiny_tokenizer

_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def test_import_speechlm_runtime_leaves_environ_unchanged():
    # a fresh interpreter: this process has imported the runtime already
    code = (
        "import os, sys; before = dict(os.environ); import speechlm.runtime; "
        "sys.exit(0 if dict(os.environ) == before else 1)"
    )
    env = {k: v for k, v in os.environ.items() if k not in _OFFLINE_VARS}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


def test_executing_runtime_llm_module_leaves_environ_unchanged(monkeypatch):
    # Execute a fresh copy of llm.py (its imports are cached, so this is cheap) without
    # touching the module other tests use.
    for var in _OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)
    before = dict(os.environ)
    spec = importlib.util.spec_from_file_location("_llm_copy", speechlm.runtime.llm.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert hasattr(module, "LLM")
    assert dict(os.environ) == before


def test_loading_opens_no_socket_without_offline_mode(tmp_path, monkeypatch):
    path = save_tiny_model(tmp_path / "lm", "llama", seed=0)
    tok_dir = tmp_path / "tok"
    tiny_tokenizer("llama").save_pretrained(tok_dir)
    # As a user's process would be: hub online, so only local_files_only keeps us local.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    for var in _OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)
    attempts = []

    def refuse(self, address):
        attempts.append(address)
        raise OSError(f"test: network access to {address} refused")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    llm = LLM.from_pretrained(path, measure_energy=False)
    assert llm.score(["one two"])
    LLM.from_config(tiny_config("llama"), tok_dir, measure_energy=False)
    assert attempts == []


def test_missing_model_dir_is_not_looked_up_on_the_hub(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(FileNotFoundError, match="local only"):
        LLM.from_pretrained("HuggingFaceTB/SmolLM2-135M")
