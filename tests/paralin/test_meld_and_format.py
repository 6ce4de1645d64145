"""ParalinGPT data and format: the MELD reader's bad rows, windows, serialization round trip,
the context budget, and the metrics."""
from __future__ import annotations

import pytest

from speechlm.paralin.meld import MeldFormatError, Turn, build_windows, read_meld_csv
from speechlm.paralin.serialize import (
    FormatConfig,
    fit_prompt,
    parse_target,
    prompt_text,
    response_text,
    target_text,
)

HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID\n"


def write(tmp_path, rows: list[str], name="m.csv"):
    path = tmp_path / name
    path.write_text(HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


GOOD = ["1,hi there,Ross,joy,positive,0,0", "2,\"oh, hey\",Monica,neutral,neutral,0,1",
        "3,bye,Ross,sadness,negative,0,3", "4,next one,Joey,surprise,positive,1,0",
        "5,what?,Chandler,anger,negative,1,1"]


def test_reader_groups_dialogues_in_order_and_windows_follow(tmp_path):
    dialogues = read_meld_csv(write(tmp_path, GOOD))
    assert [[t.index for t in d] for d in dialogues] == [[0, 1, 3], [0, 1]]
    assert dialogues[0][1].text == "oh, hey" and dialogues[0][1].utt == "dia0_utt001"
    windows = build_windows(dialogues, 1)
    assert [(tuple(t.text for t in w.context), w.current.text, w.response.text)
            for w in windows] == [((), "hi there", "oh, hey"), (("hi there",), "oh, hey", "bye"),
                                  ((), "next one", "what?")]
    assert len(build_windows(dialogues, 0)[1].context) == 0


@pytest.mark.parametrize("rows, match", [
    ([GOOD[0], "2,,Monica,neutral,neutral,0,1"], "row 3: empty Utterance"),
    ([GOOD[0], "2,hey,Monica,neutral,happy,0,1"], "row 3: Sentiment 'happy' is not one of"),
    ([GOOD[0], "2,hey,Monica,bored,neutral,0,1"], "row 3: Emotion 'bored'"),
    ([GOOD[0], "2,hey,Monica,neutral,neutral,0,x"], "row 3: Utterance_ID 'x' is not an integer"),
    ([GOOD[0], "2,hey,Monica,neutral,neutral,0,0"], "row 3: dialogue 0: Utterance_ID 0 after 0"),
    ([GOOD[0], GOOD[3], "9,back,Ross,joy,positive,0,5"],
     "row 4: dialogue 0 continues after other dialogues"),
])
def test_bad_rows_are_named(tmp_path, rows, match):
    with pytest.raises(MeldFormatError, match=match):
        read_meld_csv(write(tmp_path, rows))


def test_missing_column_and_non_utf8(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("Utterance,Speaker\nhi,Ross\n")
    with pytest.raises(MeldFormatError, match="missing column.*Emotion"):
        read_meld_csv(path)
    path.write_bytes(HEADER.encode() + b"1,caf\xe9,Ross,joy,positive,0,0\n")
    with pytest.raises(MeldFormatError, match="not UTF-8"):
        read_meld_csv(path)


def test_serialization_round_trip_and_ablations(tmp_path):
    w = build_windows(read_meld_csv(write(tmp_path, GOOD)), 2)[1]
    fmt = FormatConfig()
    prompt = prompt_text(w, fmt)
    assert prompt == ("<turn> Ross: hi there <sentiment> positive\n"
                      "<turn> Monica: oh, hey\n")
    assert "hi there" not in prompt_text(w, FormatConfig(with_context=False))
    assert "<sentiment>" not in prompt_text(w, FormatConfig(with_context_sentiment=False))
    target = target_text(w.current.sentiment, w.response.sentiment, response_text(w, fmt))
    assert parse_target(target) == ("neutral", "negative", "Ross: bye")
    assert parse_target("<cur_sentiment> maybe <resp_sentiment> positive") == \
        (None, "positive", "")


def test_context_budget_drops_the_oldest_turns_first():
    turns = [Turn("d", i, "A", f"word{i} " * 5, "neutral", "neutral") for i in range(6)]
    w = build_windows([turns], 4)[-1]  # context: turns 0..3, current 4, response 5
    words = lambda text: len(text.split())  # noqa: E731  (a stand-in tokenizer)
    full, dropped = fit_prompt(w, FormatConfig(), words, 10_000)
    assert dropped == 0 and "word0" in full
    cut, dropped = fit_prompt(w, FormatConfig(), words, words(full) - 1)
    assert dropped == 1 and "word0" not in cut and "word1" in cut
    only, dropped = fit_prompt(w, FormatConfig(), words, 1)
    assert dropped == 4 and only.count("<turn>") == 1 and "word4" in only


def test_metrics_against_hand_values():
    from speechlm.paralin.model import Prediction, evaluate

    turns = [Turn("d", i, "A", t, "neutral", s) for i, (t, s) in enumerate(
        [("a b c", "neutral"), ("the cat sat on the mat", "positive"),
         ("dogs bark", "negative")])]
    windows = build_windows([turns], 1)
    preds = [Prediction("neutral", "positive", "A: the cat sat on the mat"),
             Prediction("neutral", "positive", "A: cats meow")]
    out = evaluate(windows, preds, FormatConfig())
    assert out["cur_acc"] == 50.0 and out["resp_acc"] == 50.0
    assert 0 < out["response_bleu"] < 100 and out["responses_empty"] == 0
    perfect = [Prediction("neutral", "positive", "A: the cat sat on the mat"),
               Prediction("positive", "negative", "A: dogs bark")]
    out = evaluate(windows, perfect, FormatConfig())
    assert (out["cur_acc"], out["resp_acc"], out["cur_f1"], out["response_bleu"]) == \
        (100.0, 100.0, 1.0, 100.0)
