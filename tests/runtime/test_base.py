"""The interface types: validation of SamplingParams / Completion, light package import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from speechlm.runtime import Completion, LanguageModel, SamplingParams, ScoreResult


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 2.5}, "max_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"num_beams": 0}, "num_beams"),
        ({"num_beams": 2, "temperature": 0.7}, "beam"),
        ({"stop": "END"}, "stop must be a tuple"),
        ({"stop": ("",)}, "stop strings"),
        ({"seed": "1"}, "seed"),
    ],
)
def test_bad_sampling_params(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SamplingParams(**kwargs)


def test_sampling_params_defaults_and_list_stop():
    p = SamplingParams(stop=["a", "b"])
    assert p.stop == ("a", "b") and p.greedy and hash(p)
    assert not SamplingParams(temperature=0.5).greedy


def test_completion_and_score_result():
    with pytest.raises(ValueError, match="finish_reason"):
        Completion(text="", token_ids=[], logprob=0.0, finish_reason="done")
    assert ScoreResult(total=-1.0).tokens == []


def test_llm_is_a_language_model():
    from speechlm.runtime import LLM

    assert issubclass(LLM, LanguageModel)


def test_import_is_light():
    code = (
        "import sys, speechlm.runtime; print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
