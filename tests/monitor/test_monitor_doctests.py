import doctest
import importlib

import pytest

MODULES = ["speechlm.monitor.rule", "speechlm.monitor.sandbox", "speechlm.monitor.nab",
           "speechlm.monitor.scoring", "speechlm.monitor.detectors",
           "speechlm.monitor.aggregate", "speechlm.monitor.online",
           "speechlm.monitor._sandbox_policy"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
