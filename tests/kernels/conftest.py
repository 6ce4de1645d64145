"""Kernel tests run Triton through its interpreter on the CPU.

``TRITON_INTERPRET`` must be set before any Triton kernel module is imported, so it is
set here, at conftest import time. Runs are single-threaded (two shared cores).
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):  # tests/conftest.py
    yield
