import doctest
import importlib

import pytest

MODULES = ["speechlm.slm.units", "speechlm.slm.evalsets", "speechlm.slm.feedback",
           "speechlm.slm.recognizer"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
