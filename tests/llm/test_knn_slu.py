"""speechlm.llm.knn_slu: the nearest pool sentences vote, a weighted query by its mean
embedding; an empty query ties every label; bad input is refused."""
import math

import numpy as np
import pytest

from speechlm.llm.icl import Example, ExamplePool
from speechlm.llm.knn_slu import KnnIntentClassifier

# 2-d "embeddings": the x axis is alarms, the y axis music
VECS = {"wake me up": [1.0, 0.0], "set an alarm": [0.9, 0.2], "alarm at seven": [0.8, 0.3],
        "play jazz": [0.0, 1.0], "play some rock": [0.2, 0.9]}


def _embed(texts):
    return np.asarray([VECS.get(t, [0.6, 0.8]) for t in texts], dtype=np.float32)


def _knn(neighbors=3, labels=("alarm_set", "play_music", "weather_query")):
    pool = ExamplePool([Example(str(i), t, "alarm_set" if "play" not in t else "play_music")
                        for i, t in enumerate(VECS)], embed=_embed)
    return KnnIntentClassifier(pool, list(labels), neighbors)


def test_nearest_sentences_vote_with_their_similarity():
    knn = _knn(neighbors=3)
    post = knn.label_posteriors("play jazz")
    assert math.isclose(sum(math.exp(p) for p in post), 1.0, rel_tol=1e-9)
    # neighbours of (0, 1): play jazz (1.0), play some rock (~0.98), alarm at seven (~0.35)
    assert knn.classify("play jazz") == "play_music"
    assert post[1] > post[0] > post[2]  # a label no neighbour has gets only the floor
    # one neighbour: the nearest decides alone
    assert _knn(neighbors=1).classify("alarm at seven") == "alarm_set"


def test_weighted_hypotheses_vote_with_their_mean_embedding():
    knn = _knn(neighbors=2)
    assert knn.classify([("play jazz", 0.3), ("wake me up", 0.7)]) == "alarm_set"
    assert knn.classify([("play jazz", 0.7), ("wake me up", 0.3)]) == "play_music"
    # serializations (longest first): the first one is the query
    assert knn.classify(["play jazz", "wake me up"]) == "play_music"
    # a hypothesis without words or weight counts for nothing
    assert knn.classify([("", 0.9), ("play jazz", 0.1)]) == "play_music"


def test_a_query_without_words_ties_every_label():
    knn = _knn()
    for query in ("", [("", 1.0)], [("", 0.5), ("play jazz", 0.0)]):
        post = knn.label_posteriors(query)
        assert np.allclose(post, post[0]), query
        assert knn.classify(query) == "alarm_set"  # the first label of equal ones


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="neighbors must be >= 1"):
        _knn(neighbors=0)
    with pytest.raises(ValueError, match="pool intents not among the labels"):
        _knn(labels=("alarm_set",))
    with pytest.raises(ValueError, match="utterance u7: negative hypothesis weight"):
        _knn().label_posteriors([("play jazz", -0.1)], "u7")
    pool = ExamplePool([Example("a", "play jazz", "play_music")])
    with pytest.raises(ValueError, match="needs a pool built with an embed function"):
        KnnIntentClassifier(pool, ["play_music"], 1).classify("play jazz")
