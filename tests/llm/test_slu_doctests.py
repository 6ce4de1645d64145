import doctest
import importlib

import pytest

MODULES = ["speechlm.llm.serialize", "speechlm.llm.icl", "speechlm.llm.slu", "speechlm.llm.lora",
           "speechlm.llm.spoken_qa", "speechlm.llm.shot_pool"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
