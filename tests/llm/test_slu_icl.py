import json

import pytest

from speechlm.llm.icl import Example, ExamplePool, read_examples, words_of

POOL = [
    Example("1", "wake me up at seven", "alarm_set"),
    Example("2", "play some jazz music", "play_music"),
    Example("3", "turn off the kitchen lights", "light_off"),
    Example("4", "play a rock song", "play_music"),
    Example("5", "what is the weather in paris", "weather_query"),
]


def test_similar_puts_the_nearest_example_last():
    pool = ExamplePool(POOL)
    got = pool.select("play jazz please", 2, "similar")
    assert [e.id for e in got] == ["4", "2"]  # "jazz" is rarer than "play": 2 is nearest
    # a serialized WCN: the words of every alternative count, posteriors do not
    assert pool.select("whether:.6/weather:.4 in paris", 1)[0].intent == "weather_query"


def test_random_is_reproducible_per_query_and_first_is_fixed():
    pool = ExamplePool(POOL)
    a = pool.select("turn the lights off", 3, "random")
    assert a == pool.select("turn the lights off", 3, "random") and len(set(a)) == 3
    assert pool.select("anything", 2, "first") == POOL[:2]
    assert pool.select("anything", 0) == [] and len(pool.select("x", 99)) == len(POOL)
    with pytest.raises(ValueError, match="selection must be one of"):
        pool.select("x", 1, "best")


def test_words_ignore_posteriors_and_separators():
    assert words_of("play:.7/pay:.2 _/the jazz | it's") == ["play", "pay", "the", "jazz", "it's"]


def test_read_examples_names_file_and_line(tmp_path):
    p = tmp_path / "train.jsonl"
    p.write_text(json.dumps({"id": "a", "text": "hi  there", "intent": "greet"}) + "\n")
    assert read_examples(p) == [Example("a", "hi there", "greet")]
    p.write_text(json.dumps({"id": "a", "text": "hi"}) + "\n")
    with pytest.raises(ValueError, match=r"train.jsonl:1: needs string field"):
        read_examples(p)
    p.write_text(json.dumps({"text": "hi", "intent": "two words"}) + "\n")
    with pytest.raises(ValueError, match=r"train.jsonl:1: intent must be one token"):
        read_examples(p)
    p.write_text("")
    with pytest.raises(ValueError, match="holds no examples"):
        read_examples(p)
