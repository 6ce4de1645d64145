"""The docstring examples of the MoE offload modules run (and say what they show)."""

import doctest
import importlib

import pytest

MODULES = [
    "speechlm.runtime.moe",
    "speechlm.runtime.moe.placement",
    "speechlm.runtime.moe.latency",
    "speechlm.runtime.moe.offload",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
