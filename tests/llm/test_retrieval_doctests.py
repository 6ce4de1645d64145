import doctest
import importlib

import pytest

MODULES = ["speechlm.runtime.retrieval", "speechlm.llm.retrieval.datastore",
           "speechlm.llm.projector", "speechlm.llm.retrieval.cross_attention",
           "speechlm.llm.retrieval.neighbours"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
