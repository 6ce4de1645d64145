import doctest
import importlib

import pytest

MODULES = ["speechlm.lattice", "speechlm.lattice.lattice", "speechlm.lattice.nbest",
           "speechlm.lattice.confusion_network", "speechlm.lattice.calibration",
           "speechlm.testing.lattice"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
