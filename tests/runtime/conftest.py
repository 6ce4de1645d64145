"""Runtime tests run single-threaded: two shared cores, and reproducible float sums."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):  # tests/conftest.py
    yield
