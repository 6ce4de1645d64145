"""A spoken few-shot pool: its examples, what its shots show, and the prompts built with it."""
import pytest
from slu_testdata import make_examples, write_decode_dir

from speechlm.llm.icl import Example, ExamplePool
from speechlm.llm.serialize import SerializeConfig
from speechlm.llm.shot_pool import read_spoken_pool, shot_kind, shown_inputs
from speechlm.llm.slu import IntentClassifier, PromptConfig


class _NoModel:
    """Prompts are built without scoring: an LM without a tokenizer is never fitted."""

    def score(self, *args, **kwargs):  # pragma: no cover - not reached
        raise AssertionError("building a prompt must not score")


@pytest.fixture
def pool(tmp_path):
    rows = make_examples(20, 7)
    dec, data = write_decode_dir(tmp_path / "pool", rows)
    return rows, dec, data


def test_read_spoken_pool_is_the_data_dirs_labelled_references(pool):
    rows, _, data = pool
    examples = read_spoken_pool(data)
    assert [(e.id, e.text, e.intent) for e in examples] == sorted(
        (r["id"], r["text"], r["intent"]) for r in rows)


def test_bad_spoken_pool_names_the_file_and_utterance(pool, tmp_path):
    rows, _, data = pool
    with pytest.raises(FileNotFoundError, match="text does not exist"):
        read_spoken_pool(tmp_path)
    lines = (data / "utt2intent").read_text().splitlines()
    (data / "utt2intent").write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(ValueError, match=f"utt2intent: no intent for 1 .*{lines[0].split()[0]}"):
        read_spoken_pool(data)
    (data / "utt2intent").write_text("\n".join(lines) + "\n")
    first = sorted(r["id"] for r in rows)[0]
    text = (data / "text").read_text().splitlines()
    (data / "text").write_text("\n".join([first] + text[1:]) + "\n")
    with pytest.raises(ValueError, match=f"utterance {first} has an empty reference"):
        read_spoken_pool(data)


def test_shots_show_the_decode_of_their_speech(pool):
    rows, dec, data = pool
    config = SerializeConfig()
    onebest = shown_inputs("1best", config, data, dec)
    wcn = shown_inputs("wcn", config, data, dec)
    text = shown_inputs("text", config, data, None)
    for r in rows:
        words = r["text"].split()
        assert text[r["id"]] == r["text"]
        assert onebest[r["id"]] == " ".join(words[:-1] + ["xx"])  # write_decode_dir's error
        assert wcn[r["id"]].endswith(f"xx:.6/{words[-1]}:.4")
    # an utterance the first pass wrote nothing for (silence) shows the empty hypothesis
    lines = (dec / "text").read_text().splitlines()
    (dec / "text").write_text("\n".join(lines[1:]) + "\n")
    assert shown_inputs("1best", config, data, dec)[lines[0].split()[0]] == ""
    with pytest.raises(ValueError, match="need the pool's decode dir"):
        shown_inputs("wcn", config, data, None)


def test_shot_kind_follows_the_query():
    assert shot_kind("same", "1best") == "onebest"
    assert shot_kind("same", "nbest_marg") == "onebest"  # one hypothesis at a time
    assert shot_kind("text", "wcn") == "text"
    with pytest.raises(ValueError, match="shot input must be one of"):
        shot_kind("wcn_marg", "wcn")


def test_matched_shots_are_the_same_shots_shown_otherwise(pool):
    rows, dec, data = pool
    examples = read_spoken_pool(data)
    labels = sorted({e.intent for e in examples})
    prompt = PromptConfig(shots=3, shot_selection="similar")
    shown = shown_inputs("wcn", SerializeConfig(), data, dec)
    as_text = IntentClassifier(_NoModel(), labels, prompt, ExamplePool(examples))
    matched = IntentClassifier(_NoModel(), labels, prompt, ExamplePool(examples), shown)
    query = "turn on the lights in the kitchen"
    chosen = ExamplePool(examples).select(query, 3, "similar")
    text_lines = as_text.prompt_for(query).split("\n")
    matched_lines = matched.prompt_for(query).split("\n")
    # the same examples, in the same order, with the same labels; only their input differs
    assert text_lines == [f"{e.text} =>{prompt.label_text(e.intent)}" for e in chosen] + [
        f"{query} =>"]
    assert matched_lines == [f"{shown[e.id]} =>{prompt.label_text(e.intent)}"
                             for e in chosen] + [f"{query} =>"]
    assert matched_lines != text_lines
    # every example must have something to show
    with pytest.raises(ValueError, match="1 pool example.* nothing to show as a shot"):
        IntentClassifier(_NoModel(), labels, prompt,
                         ExamplePool([*examples, Example("new", "hi", labels[0])]), shown)
