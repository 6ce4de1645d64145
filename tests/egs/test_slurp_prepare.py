"""egs/slurp/{slu1,icl1} stage 1's SLURP side (slu1/local/prepare_slu.py): sets split by
sentence, a ``--test_jsonl`` set kept whole and held out of every training text, and its
intents that training does not have reported."""
import importlib.util
import json
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "prepare_slu", Path(__file__).parents[2] / "egs" / "slurp" / "slu1" / "local"
    / "prepare_slu.py")
prepare_slu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(prepare_slu)


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def slurp(tmp_path):
    d = tmp_path / "slurp"
    d.mkdir()
    _jsonl(d / "devel.jsonl", [
        {"slurp_id": k, "sentence": f"Wake me up at {w}!", "intent": "alarm_set"}
        for k, w in enumerate("one two three four five six seven eight".split())] + [
        {"slurp_id": 100 + k, "sentence": f"play {w}", "intent": "play_music"}
        for k, w in enumerate("jazz rock pop folk".split())])
    (d / "lm_train_text.txt").write_text(
        "wake me up at six\nPlay Jazz\nturn the lights off\n", encoding="utf-8")
    return d


def test_test_jsonl_is_held_out_of_every_training_text(slurp, tmp_path):
    held = _jsonl(tmp_path / "kept back.jsonl", [
        {"slurp_id": 7, "sentence": "play jazz", "intent": "play_music"},
        {"id": "x", "sentence": "wake me up at six", "intent": "alarm_set"},
        {"slurp_id": 9, "sentence": "order a pizza", "intent": "takeaway_order"}])
    sets, lm_text, asr_lines, summary = prepare_slu.prepare_slurp(
        slurp, [held], dev_size=2, test_size=2, seed=0, asr_train_lines=2)
    assert [r["id"] for r in sets["test_kept_back"]] == [
        "test_kept_back-7", "test_kept_back-x", "test_kept_back-9"]
    assert sets["test_kept_back"][1]["text"] == "wake me up at six"
    held_texts = {r["text"] for n in ("dev", "test", "test_kept_back") for r in sets[n]}
    assert not held_texts & {r["text"] for r in sets["slu_train"]}
    assert not held_texts & set(lm_text) and not held_texts & set(asr_lines)
    assert "turn the lights off" in lm_text and len(asr_lines) == 2
    # "play jazz" and "wake me up at six" leave slu_train unless drawn for dev/test
    drawn = {r["text"] for n in ("dev", "test") for r in sets[n]}
    assert summary["removed_as_held_out"]["slu_train"] == len(
        {"play jazz", "wake me up at six"} - drawn)
    assert summary["removed_as_held_out"]["lm_text"] >= 2  # both lines of lm_train_text
    assert summary["sets"]["test_kept_back"] == 3
    assert summary["test_intents_not_in_train"] == {"test_kept_back": ["takeaway_order"]}
    again = prepare_slu.prepare_slurp(slurp, [held], 2, 2, 0, asr_train_lines=2)
    assert again == (sets, lm_text, asr_lines, summary)


def test_test_jsonl_size_keeps_a_seeded_sample_of_distinct_sentences(slurp, tmp_path):
    rows = [{"slurp_id": k, "sentence": f"set an alarm for {w}", "intent": "alarm_set"}
            for k, w in enumerate("one two three four five six seven eight".split())]
    rows.append({"slurp_id": 99, "sentence": "Set an alarm for two", "intent": "alarm_set"})
    held = _jsonl(tmp_path / "big.jsonl", rows)
    sets, _, _, summary = prepare_slu.prepare_slurp(slurp, [held], 2, 2, 0,
                                                    asr_train_lines=2, test_jsonl_size=3)
    texts = [r["text"] for r in sets["test_big"]]
    assert len(texts) == len(set(texts)) == 3  # "two" twice in the file, at most once here
    order = [r["text"] for r in prepare_slu.read_slurp_jsonl(held, "x-")[0]]
    assert texts == sorted(texts, key=order.index)  # file order
    assert summary["test_jsonl_sampled"] == {"test_big": {"kept": 3, "lines": 9}}
    assert summary["sets"]["test_big"] == 3
    again = prepare_slu.prepare_slurp(slurp, [held], 2, 2, 0, asr_train_lines=2,
                                      test_jsonl_size=3)
    assert again[0]["test_big"] == sets["test_big"]
    whole, _, _, summary = prepare_slu.prepare_slurp(slurp, [held], 2, 2, 0,
                                                     asr_train_lines=2, test_jsonl_size=20)
    assert len(whole["test_big"]) == 9 and summary["test_jsonl_sampled"] == {}


def test_bad_test_jsonl_names_the_file_and_line(slurp, tmp_path):
    bad = _jsonl(tmp_path / "bad.jsonl", [{"sentence": "play jazz", "intent": "play_music"},
                                          {"sentence": "no label"}])
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not a SLURP line"):
        prepare_slu.prepare_slurp(slurp, [bad], 2, 2, 0)
    other = tmp_path / "other"
    other.mkdir()
    twin = _jsonl(other / "bad.jsonl", [{"sentence": "a", "intent": "b"}])
    fine = _jsonl(tmp_path / "bad.jsonl", [{"sentence": "c", "intent": "d"}])
    with pytest.raises(ValueError, match="a second test set named test_bad"):
        prepare_slu.prepare_slurp(slurp, [fine, twin], 2, 2, 0)


@pytest.mark.parametrize("name", ["kept back.jsonl", "slurp-test (1).jsonl", "test.json",
                                  "café.jsonl", "a.b.jsonl"])
def test_set_name_is_the_one_run_sh_spells(name):
    # run.sh names the set before stage 1 runs: both spellings must agree, or stage 1 would
    # write data the later stages never find
    import subprocess

    shell = subprocess.run(
        ["bash", "-c", "echo test_$(basename \"$1\" .jsonl | tr -c 'A-Za-z0-9_\\n' _)", "_",
         f"/some/dir/{name}"], capture_output=True, text=True, check=True,
        env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"}).stdout.strip()
    assert prepare_slu.test_set_name(Path("/some/dir") / name) == shell


def test_intent_is_scenario_action(tmp_path):
    """Upstream devel has lines whose 'intent' field is the action alone ('query' for
    weather_query): the intent is built from scenario and action, as ESPnet does, and the
    replaced lines are counted per file; a file without scenario/action keeps 'intent'."""
    d = tmp_path / "slurp"
    d.mkdir()
    _jsonl(d / "devel.jsonl", [
        {"slurp_id": 1, "sentence": "will it rain", "intent": "query", "scenario": "weather",
         "action": "query"},
        {"slurp_id": 2, "sentence": "what are my lists", "intent": "query",
         "scenario": "lists", "action": "query"},
        {"slurp_id": 3, "sentence": "wake me at six", "intent": "alarm_set",
         "scenario": "alarm", "action": "set"},
        {"slurp_id": 4, "sentence": "wake me at seven", "intent": "alarm_set"}])
    (d / "lm_train_text.txt").write_text("hello\n", encoding="utf-8")
    held = _jsonl(tmp_path / "held.jsonl", [
        {"slurp_id": 9, "sentence": "is it sunny", "intent": "query", "scenario": "weather",
         "action": "query"},
        {"slurp_id": 10, "sentence": "play jazz", "scenario": "play", "action": "music"}])
    sets, _, _, summary = prepare_slu.prepare_slurp(d, [held], 0, 0, 0, asr_train_lines=1)
    assert {r["text"]: r["intent"] for r in sets["slu_train"]} == {
        "will it rain": "weather_query", "what are my lists": "lists_query",
        "wake me at six": "alarm_set", "wake me at seven": "alarm_set"}
    assert [r["intent"] for r in sets["test_held"]] == ["weather_query", "play_music"]
    assert summary["intent_field_replaced_by_scenario_action"] == {"devel": 2, "test_held": 1}
    bad = _jsonl(tmp_path / "bad.jsonl", [{"slurp_id": 1, "sentence": "hi", "scenario": "x"}])
    with pytest.raises(ValueError, match=r"bad.jsonl:1: not a SLURP line"):
        prepare_slu.prepare_slurp(d, [bad], 0, 0, 0, asr_train_lines=1)
