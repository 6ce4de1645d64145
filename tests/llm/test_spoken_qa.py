"""Spoken QA built from slot annotations: questions, scoring, shots, prompts, generation."""
import json

import pytest

from speechlm.core.errors import InputError
from speechlm.llm.spoken_qa import (
    QAItem,
    answer_questions,
    build_items,
    build_prompt,
    choose_shots,
    exact_match,
    parse_annotation,
    read_annotations,
    score,
    token_f1,
    vote_answers,
)
from speechlm.testing.llm import tiny_llm


def test_one_question_per_slot_type_and_the_counts():
    items, counts = build_items([
        ("s1", "wake me up at [time : five am] [date : Tomorrow]"),
        ("s2", "play some music"),
        ("s3", "convert [currency_name : dollars] to [currency_name : yen]"),
        ("s4", "turn on the [house_place : kitchen] and [house_place : kitchen] lights"),
        ("s5", "call [person : ]"),
    ])
    assert [(i.utt, i.slot, i.answer) for i in items] == [
        ("s1", "time", "five am"), ("s1", "date", "tomorrow"), ("s4", "house_place", "kitchen")]
    assert items[0].question == "What time is mentioned?"
    assert counts == {"items": 3, "no_slot": 1, "ambiguous": 1, "empty_value": 1}
    assert build_items([("x", "[new_slot : abc]")])[0][0].question == \
        "What new slot is mentioned?"


def test_squad_style_scores_by_hand():
    assert exact_match("The Kitchen.", "kitchen")
    assert not exact_match("kitchen lights", "kitchen")
    # pred "at five am" vs gold "five am": common 2, precision 2/3, recall 1 -> F1 0.8
    assert token_f1("at five am", "five am") == pytest.approx(0.8)
    assert token_f1("", "five am") == 0.0 and token_f1("", "") == 1.0
    items = [QAItem("u", "time", "q", "five am"), QAItem("v", "date", "q", "monday")]
    s = score(items, ["five am", "on tuesday"])
    assert s == {"questions": 2, "exact_match": 50.0, "f1": 50.0}
    with pytest.raises(ValueError, match="2 items but 1"):
        score(items, ["x"])


def test_shots_never_the_same_utterance_and_same_slot_first():
    pool = [QAItem(f"p{i}", "date" if i % 2 else "time", "q", f"a{i}") for i in range(8)]
    pool.append(QAItem("q1", "time", "q", "own"))
    item = QAItem("q1", "time", "What time is mentioned?", "x")
    shots = choose_shots(item, pool, 5, seed=3)
    assert all(s.utt != "q1" for s in shots)
    assert [s.slot for s in shots[:4]] == ["time"] * 4 and shots[4].slot == "date"
    assert shots == choose_shots(item, pool, 5, seed=3)  # reproducible


def test_prompt_ends_with_the_query_and_holds_the_demonstrations():
    shot = QAItem("p1", "time", "What time is mentioned?", "six pm")
    item = QAItem("u1", "time", "What time is mentioned?", "five am")
    prompt = build_prompt(item, "wake/0.6 make/0.4 me up at five am", [shot],
                          {"p1": "remind me at six pm"}, instruction="Answer.")
    assert prompt == ("Answer.\n\nRequest: remind me at six pm\nQuestion: What time is "
                      "mentioned?\nAnswer: six pm\n\nRequest: wake/0.6 make/0.4 me up at "
                      "five am\nQuestion: What time is mentioned?\nAnswer:")


def test_generation_drops_shots_to_fit_and_counts_empty_contexts():
    llm = tiny_llm()
    pool = [QAItem(f"p{i}", "time", "What time is mentioned?", "at the start")
            for i in range(6)]
    pool_text = {f"p{i}": " ".join(["the"] * 120) for i in range(6)}
    items = [QAItem("u1", "time", "What time is mentioned?", "the end"),
             QAItem("u2", "time", "What time is mentioned?", "the start")]
    limit = llm.max_length
    answers, counts = answer_questions(llm, items, {"u1": "the end of it"}, pool, pool_text,
                                       shots=6, max_tokens=4, progress=False)
    assert len(answers) == 2 and all("\n" not in a for a in answers)
    assert counts["empty_context"] == 1
    # 6 demonstrations of 120+ tokens cannot fit the tiny model's context: some were dropped
    assert limit < 6 * 120 and counts["shots_dropped"] > 0


def test_annotations_reader_names_the_bad_line(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text(json.dumps({"slurp_id": 7, "sentence_annotation": "at [time : noon]"}) + "\n"
                 + json.dumps({"slurp_id": 8}) + "\n" + "[1, 2]\n")
    with pytest.raises(InputError, match=r"x.jsonl:3: not a SLURP JSON line"):
        read_annotations(f, "slurp-")
    f.write_text(json.dumps({"slurp_id": 7, "sentence_annotation": "at [time : noon]"}) + "\n"
                 + json.dumps({"slurp_id": 8, "sentence": "no annotation"}) + "\n")
    assert read_annotations(f, "slurp-") == {"slurp-7": "at [time : noon]"}
    assert parse_annotation(read_annotations(f)["7"]) == [("time", "noon")]


def test_snips_spans_give_the_same_items_as_an_annotated_sentence():
    snips, counts = build_items([
        ("u1", [("city", "Paris"), ("timeRange", "Tonight")]),
        ("u2", []),
        ("u3", [("artist", "abba"), ("artist", "queen")]),
        ("u4", [("object_select", "this")]),
    ])
    assert [(i.utt, i.slot, i.answer) for i in snips] == [
        ("u1", "city", "paris"), ("u1", "timeRange", "tonight"), ("u4", "object_select", "this")]
    assert [i.question for i in snips] == [
        "Which city is mentioned?", "What time is mentioned?", "What object select is mentioned?"]
    assert counts == {"items": 3, "no_slot": 1, "ambiguous": 1}
    slurp, _ = build_items([("u1", "weather in [city : Paris] [timeRange : Tonight]")])
    assert slurp == snips[:2]
    assert build_items([("x", [("partySizeNumber", "2")])])[0][0].question == \
        "What party size number is mentioned?"


def test_annotations_reader_takes_snips_spans_and_names_bad_spans(tmp_path):
    f = tmp_path / "test.jsonl"
    f.write_text(json.dumps({"id": "snips-GetWeather-0001", "text": "rain in paris",
                             "spans": [["city", "paris"]]}) + "\n"
                 + json.dumps({"id": "snips-GetWeather-0002", "text": "rain", "spans": []})
                 + "\n" + json.dumps({"id": "x", "text": "no spans"}) + "\n")
    ann = read_annotations(f)
    assert ann == {"snips-GetWeather-0001": [("city", "paris")], "snips-GetWeather-0002": []}
    assert build_items(ann.items())[1] == {"items": 1, "no_slot": 1}
    f.write_text(json.dumps({"id": "a", "spans": [["city", "paris"]]}) + "\n"
                 + json.dumps({"id": "b", "spans": [["city"]]}) + "\n")
    with pytest.raises(InputError, match=r"test.jsonl:2: spans is not a list of \[slot type"):
        read_annotations(f)


def test_vote_pools_equal_answers_and_breaks_ties_by_order():
    assert vote_answers([("nine", 0.45), ("five", 0.3), ("Five.", 0.25)]) == "five"
    assert vote_answers([("nine", 0.5), ("five", 0.5)]) == "nine"
    assert vote_answers([("the kitchen", 1.0)]) == "the kitchen"
    assert vote_answers([]) == ""


class EchoLastWordLM:
    """A test double: answers with the last word of the query's request line."""

    max_length = 4096

    def __init__(self):
        self.prompts = []

    def tokenizer(self, text):
        return {"input_ids": text.split()}

    def generate(self, prompts, params):
        self.prompts += prompts
        requests = [p.rsplit("Request: ", 1)[1].split("\n")[0] for p in prompts]
        return [type("Completion", (), {"text": " " + (r.split() or [""])[-1]})()
                for r in requests]


def test_weighted_contexts_are_asked_one_by_one_and_voted():
    lm = EchoLastWordLM()
    pool = [QAItem(f"p{i}", "time", "What time is mentioned?", "six") for i in range(3)]
    pool_text = {f"p{i}": f"remind me at six {i}" for i in range(3)}
    items = [QAItem("u1", "time", "What time is mentioned?", "five"),
             QAItem("u2", "time", "What time is mentioned?", "ten")]
    contexts = {"u1": [("wake me at nine", 0.45), ("wake me at five", 0.3),
                       ("make me at five", 0.25)],
                "u2": [("", 1.0)]}
    answers, counts = answer_questions(lm, items, contexts, pool, pool_text, shots=2,
                                       progress=False)
    assert answers == ["five", ""]  # 0.55 for "five" beats 0.45 for "nine"
    assert counts["empty_context"] == 1
    # one prompt per hypothesis, the same demonstrations for each of an utterance's
    assert len(lm.prompts) == 4
    demos = {p.rsplit("Request: ", 1)[0] for p in lm.prompts[:3]}
    assert len(demos) == 1
    # a plain line is one hypothesis: the answer is its own
    assert answer_questions(lm, items[:1], {"u1": "wake me at nine"}, pool, pool_text,
                            shots=2, progress=False)[0] == ["nine"]
