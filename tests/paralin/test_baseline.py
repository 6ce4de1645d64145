"""Sequence-classifier baseline: MiniLM + logistic-regression heads on dialogue windows."""
import json

import pytest

from speechlm.core import catalogue
from speechlm.paralin.baseline import SentimentHeads, run, window_text
from speechlm.paralin.meld import Turn, Window

# what the current speaker says -> its sentiment; the response mirrors it
SAID = {
    "positive": ["I love this, it is wonderful!", "What a great day, I am so happy!",
                 "This is fantastic news, thank you!", "You did an amazing job, I adore it.",
                 "I am thrilled, this is the best gift ever."],
    "negative": ["This is terrible, I hate it.", "I am furious, you ruined everything.",
                 "What an awful day, I feel miserable.", "That was a disgusting thing to do.",
                 "I am so sad and angry about this."],
    "neutral": ["The meeting is at noon on Tuesday.", "Please pass me the blue folder.",
                "The train leaves from platform four.", "I put the keys on the table.",
                "We need two more chairs in the kitchen."],
}


def window(i: int, label: str, text: str) -> Window:
    t = [Turn(str(i), k, s, x, "neutral", sent) for k, (s, x, sent) in enumerate([
        ("Ross", "Hi there.", "neutral"), ("Rachel", text, label),
        ("Ross", "Okay.", label)])]
    return Window(tuple(t[:1]), t[1], t[2])


def windows(take: slice) -> list[Window]:
    return [window(10 * n + i, label, texts[i]) for n, (label, texts) in enumerate(SAID.items())
            for i in range(len(texts))[take]]


def test_window_text_is_speaker_tagged_oldest_first():
    w = window(1, "positive", "Great!")
    assert window_text(w) == "Ross: Hi there. | Rachel: Great!"
    assert window_text(w, context=False) == "Rachel: Great!"


@pytest.mark.skipif(not catalogue.installed("minilm-l6"), reason="minilm-l6 not installed")
def test_heads_learn_sentiment_from_the_words_and_write_the_recipe_layout(tmp_path):
    from speechlm.encoders import load_encoder

    encoder = load_encoder("minilm-l6")
    train, held_out = windows(slice(0, 4)), windows(slice(4, 5))
    scores = run(train, {"dev": held_out}, encoder, tmp_path / "head")
    assert scores["dev"]["windows"] == 3
    assert scores["dev"]["cur_acc"] >= 66.0 and scores["dev"]["resp_acc"] >= 66.0, scores
    meta = json.loads((tmp_path / "head" / "paralin.json").read_text())
    assert meta["report"]["train_windows"] == 12
    rows = (tmp_path / "head" / "dev" / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(r)["cur_ref"] for r in rows] == ["positive", "negative", "neutral"]

    one_label = [w for w in train if w.current.sentiment == "neutral"]
    with pytest.raises(ValueError, match="one cur sentiment only"):
        SentimentHeads(encoder).fit(one_label)
    with pytest.raises(RuntimeError, match="before fit"):
        SentimentHeads(encoder).predict(held_out)
