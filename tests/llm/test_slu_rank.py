import json
import logging
import math

import pytest

from speechlm.llm.icl import Example, ExamplePool
from speechlm.llm.slu import (
    IntentClassifier,
    PromptConfig,
    SLUConfig,
    accuracy,
    rank_labels,
    read_utt2posteriors,
    write_utt2posteriors,
)
from speechlm.runtime.base import LanguageModel, ScoreResult


class KeywordLM(LanguageModel):
    """A test double: a label scores 0 per token whose word occurs in the prompt, else -5."""

    def __init__(self):
        self.calls = []

    def score(self, texts, prefix=None, *, per_token=False, append_eos=False, batch_size=16):
        self.calls.append((list(texts), prefix, append_eos))
        out = []
        for t in texts:
            vals = [0.0 if w in prefix.split() else -5.0 for w in t.split()]
            vals += [-1.0] if append_eos else []
            out.append(ScoreResult(total=sum(vals), tokens=t.split(), token_logprobs=vals))
        return out if per_token else [r.total for r in out]

    def generate(self, prompts, params=None, *, on_token=None):
        raise NotImplementedError

    def chat(self, messages, params=None, *, on_token=None):
        raise NotImplementedError


def test_prompt_build_and_label_text():
    p = PromptConfig(instruction="Intent?", arrow=" ->", shot_separator=" ; ")
    assert p.build("wake me", [("play jazz", " play music")]) == (
        "Intent? ; play jazz -> play music ; wake me ->")
    assert p.label_text("alarm_set") == " alarm set"
    assert PromptConfig(verbalize=False).label_text("alarm_set") == " alarm_set"
    assert p.label_text("SearchScreeningEvent") == " search screening event"
    assert p.label_text("iot_hue_lightup") == " iot hue lightup"
    assert PromptConfig().build("") == "=>"  # an empty hypothesis still gets a prompt


def test_rank_labels_is_one_shared_prefix_call():
    lm = KeywordLM()
    scores = rank_labels(lm, "turn the light on =>", [" light on", " alarm set"])
    assert lm.calls == [([" light on", " alarm set"], "turn the light on =>", False)]
    assert scores == [0.0, -10.0]
    # length norm: per-token mean; EOS counts as a token
    assert rank_labels(lm, "alarm =>", [" alarm set", " light"], length_norm=True,
                       append_eos=True) == [-2.0, -3.0]


def test_length_norm_can_change_the_winner():
    lm = KeywordLM()
    labels = [" light on now", " radio"]  # totals -5 vs -5; per token -1.67 vs -5
    assert rank_labels(lm, "light on =>", labels)[0] == rank_labels(lm, "light on =>",
                                                                     labels)[1] - 0.0
    normed = rank_labels(lm, "light on =>", labels, length_norm=True)
    assert normed[0] > normed[1]


def test_classifier_uses_shots_from_the_pool():
    pool = ExamplePool([Example("1", "wake me up at seven", "alarm_set"),
                        Example("2", "play some jazz", "play_music")])
    clf = IntentClassifier(KeywordLM(), ["alarm_set", "play_music"], PromptConfig(shots=1),
                           pool)
    # the query shares "jazz" with example 2, whose label words then sit in the prompt
    assert clf.prompt_for("jazz now") == "play some jazz => play music\njazz now =>"
    assert clf.predict({"u2": "jazz now", "u1": "wake up"}, progress=False) == {
        "u1": "alarm_set", "u2": "play_music"}
    with pytest.raises(ValueError, match="needs a pool"):
        IntentClassifier(KeywordLM(), ["a"], PromptConfig(shots=2))


def test_real_lm_prompt_is_fitted_from_the_left(tiny_lm, caplog):
    from speechlm.runtime import LLM

    llm = LLM.from_pretrained(tiny_lm)  # 32 positions
    pool = ExamplePool([Example(str(i), "lights on", "light_on") for i in range(3)])
    labels = ["light_on", "light_off", "weather_query"]
    clf = IntentClassifier(llm, labels, PromptConfig(shots=3, append_eos=True), pool)
    long = " ".join(["please"] * 60 + ["play", "some", "jazz", "music"])
    with caplog.at_level(logging.WARNING, logger="speechlm.llm.slu"):
        prompt = clf.prompt_for(long, utt="u7")
    assert "u7" in caplog.text and "cut" in caplog.text
    words = long.split()
    kept = prompt[: -len(" =>")].split()
    assert 1 <= len(kept) < len(words) and kept == words[-len(kept):]  # shots went first
    n = len(llm.tokenizer(prompt)["input_ids"])
    assert n + max(len(llm.tokenizer(t, add_special_tokens=False)["input_ids"])
                   for t in clf.label_texts) + 1 <= llm.max_length
    assert clf.classify(long, utt="u7") in labels  # and the runtime does not refuse it
    # a short input keeps as many shots as fit, whole, and the input uncut
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="speechlm.llm.slu"):
        short = clf.prompt_for("lights on")
    assert short.endswith("lights on => light on\nlights on =>") and not caplog.text


def test_accuracy_counts_missing_as_errors():
    acc = accuracy({"a": "x", "b": "y"}, {"a": "x", "b": "z", "c": "x"})
    assert acc == {"accuracy": 1 / 3, "correct": 1, "total": 3, "missing": 1}


def test_slu_config_checks(tmp_path):
    with pytest.raises(ValueError, match="exactly one of llm_path"):
        SLUConfig(mode="icl", labels=["a"])
    with pytest.raises(ValueError, match="needs a local LM"):
        SLUConfig(mode="lora", labels=["a"], llm_url="http://x/v1")
    with pytest.raises(ValueError, match="mode must be one of"):
        SLUConfig(mode="head", labels=["a"], llm_path="/x")
    cfg = SLUConfig(mode="icl", labels=["a", "b"], llm_path="/x",
                    prompt=PromptConfig(shots=2, length_norm=True))
    cfg.save(tmp_path)
    assert SLUConfig.load(tmp_path) == cfg
    old = json.loads((tmp_path / "slu.json").read_text())
    (tmp_path / "slu.json").write_text(json.dumps({**old, "version": 1}))
    with pytest.raises(ValueError, match=r"slu.json: slu.json version 1.*--overwrite"):
        SLUConfig.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="not an SLU dir"):
        SLUConfig.load(tmp_path / "nope")


class BiasedLM(KeywordLM):
    """A test double with a label prior: " set" scores -1 after any prompt; a label whose
    word is in the prompt's last line scores -2, others -6. Uncalibrated, " set" always wins."""

    def score(self, texts, prefix=None, *, per_token=False, append_eos=False, batch_size=16):
        query = prefix.split("\n")[-1].split()
        out = []
        for t in texts:
            v = -1.0 if t == " set" else (-2.0 if t.split()[-1] in query else -6.0)
            out.append(ScoreResult(total=v, tokens=[t], token_logprobs=[v]))
        return out if per_token else [r.total for r in out]


def test_contextual_calibration_removes_a_label_prior():
    labels = ["set", "play_music", "weather_query"]
    plain = IntentClassifier(BiasedLM(), labels, PromptConfig(shots=0))
    assert plain.classify("play some music") == "set"
    calibrated = IntentClassifier(BiasedLM(), labels, PromptConfig(shots=0, calibrate=True))
    # after "N/A": set -1, the others -6; so set 0, play_music +4, weather_query 0
    assert calibrated.scores("play some music") == [0.0, 4.0, 0.0]
    assert calibrated.classify("play some music") == "play_music"
    assert calibrated.classify("what is the weather query") == "weather_query"


def test_marginal_scores_average_label_posteriors_over_hypotheses():
    clf = IntentClassifier(KeywordLM(), ["light_on", "alarm_set"], PromptConfig(shots=0))
    # "light on" alone: light_on wins; "alarm set" alone: alarm_set wins
    on = clf.scores("turn the light on")
    assert on[0] > on[1]
    # weights decide between two hypotheses that disagree
    assert clf.classify([("turn the light on", 0.3), ("alarm set now", 0.7)]) == "alarm_set"
    assert clf.classify([("turn the light on", 0.7), ("alarm set now", 0.3)]) == "light_on"
    # the result is a log-probability over the labels: exp sums to 1
    m = clf.marginal_scores([("turn the light on", 2.0), ("alarm set now", 2.0)])
    assert sum(math.exp(x) for x in m) == pytest.approx(1.0)
    # a single hypothesis ranks as scoring it alone; no hypothesis = the empty one
    alone = clf.marginal_scores([("turn the light on", 1.0)])
    assert max(range(2), key=alone.__getitem__) == max(range(2), key=on.__getitem__)
    assert clf.marginal_scores([]) == clf.marginal_scores([("", 1.0)])
    with pytest.raises(ValueError, match="utterance u7: hypothesis weights"):
        clf.marginal_scores([("a", -1.0), ("b", 2.0)], "u7")
    assert clf.predict({"u1": [("alarm set", 1.0)], "u2": [("light on", 1.0)]},
                       progress=False) == {"u1": "alarm_set", "u2": "light_on"}


def test_label_posteriors_are_normalized_and_written_most_likely_first(tmp_path):
    clf = IntentClassifier(KeywordLM(), ["alarm_set", "light_on"], PromptConfig(shots=0))
    post = clf.predict_posteriors({"u2": "light on", "u1": "alarm"}, progress=False)
    assert list(post) == ["u1", "u2"]
    for row in post.values():
        assert sum(math.exp(x) for x in row) == pytest.approx(1.0)
    assert post["u2"][1] > post["u2"][0]  # light_on more likely after "light on"
    path = tmp_path / "utt2posteriors"
    write_utt2posteriors(path, clf.labels, post)
    first = path.read_text().splitlines()[1].split()
    assert first[0] == "u2" and first[1].startswith("light_on:")
    back = read_utt2posteriors(path)
    assert back["u2"]["light_on"] == pytest.approx(post["u2"][1], abs=1e-4)
    path.write_text("u1 alarm_set:-0.1 light_on\n")
    with pytest.raises(ValueError, match=r"utt2posteriors:1: 'u1': 'light_on' is not label:logp"):
        read_utt2posteriors(path)
