"""Session fixtures of the SLU tests (builders in ``slu_testdata.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from slu_testdata import make_slu_data, train_tiny_lm


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):  # tests/conftest.py
    yield


@pytest.fixture(scope="session")
def slu_data(tmp_path_factory) -> dict:
    return make_slu_data(tmp_path_factory.mktemp("slu_data"))


@pytest.fixture(scope="session")
def tiny_lm(slu_data, tmp_path_factory) -> Path:
    return train_tiny_lm(slu_data["lm_text"], tmp_path_factory.mktemp("tiny_lm") / "lm")
