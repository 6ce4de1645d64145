"""Fixtures shared by every test folder."""

from __future__ import annotations

import os

import pytest
import torch

from speechlm.testing.shared_data import shared_data_root


@pytest.fixture(scope="session", autouse=True)
def _shared_data_env():
    """Export the shared data root the tests found as ``SPEECHLM_DATA`` (when unset), so
    the library's own lookup and the recipes and servers tests start as subprocesses read
    the same copy, also from a worktree or a clone whose ``../shared/data`` is absent."""
    root = None if os.environ.get("SPEECHLM_DATA") else shared_data_root()
    if root is None:
        yield
        return
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPEECHLM_DATA", str(root))
        yield


@pytest.fixture(scope="session", autouse=True)
def _gguf_cache_env(tmp_path_factory):
    """The dequantized copies of GGUF models go to a folder of this test session (when
    ``SPEECHLM_GGUF_CACHE`` is unset), not to the user's cache; the session's first load
    of a GGUF model converts it, the others (recipe subprocesses too) read the copy."""
    from speechlm.runtime.gguf_cache import CACHE_ENV

    if os.environ.get(CACHE_ENV):
        yield
        return
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("gguf_cache")))
        yield


@pytest.fixture
def one_torch_thread():
    """Run a test on one torch thread (two shared cores; reproducible float sums)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
