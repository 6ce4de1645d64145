"""egs/slurp/icl1 --corpus snips, stage 1's text side (../slu1/local/prepare_slu.py): the
few-shot pool, dev and test sets drawn per intent, or test from a dir of validate_*.json."""
import importlib.util
import json
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "prepare_slu", Path(__file__).parents[2] / "egs" / "slurp" / "slu1" / "local"
    / "prepare_slu.py")
prepare_slu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(prepare_slu)


def _snips_file(path, intent, texts, slot="thing"):
    rows = [{"data": [{"text": "please "}, {"text": t, "entity": slot}]} for t in texts]
    path.write_text(json.dumps({intent: rows}), encoding="utf-8")


@pytest.fixture
def snips(tmp_path):
    d = tmp_path / "snips"
    d.mkdir()
    for intent in ("PlayMusic", "GetWeather"):
        _snips_file(d / f"train_{intent}_full.json", intent,
                    [f"{intent} words {w}" for w in "abcdefghijkl"] + [f"{intent} 42"])
        _snips_file(d / f"train_{intent}.json", intent, ["never read"])
    return d


def test_drawn_dev_test_and_pool(snips):
    sets, summary = prepare_slu.prepare_snips(snips, dev_per_intent=2, test_per_intent=3,
                                              seed=0, pool_per_intent=4)
    assert {n: len(r) for n, r in sets.items()} == {"slu_train": 8, "dev": 4, "test": 6}
    texts = {n: {r["text"] for r in rows} for n, rows in sets.items()}
    assert not texts["slu_train"] & (texts["dev"] | texts["test"])
    assert not texts["dev"] & texts["test"]
    assert "never read" not in set().union(*texts.values())  # only the _full files
    assert summary["left_out_with_digits"] == {"train_full": 2}
    row = sets["test"][0]
    assert row["id"].startswith("snips-") and row["spans"] == [["thing", row["text"][7:]]]
    again, _ = prepare_slu.prepare_snips(snips, 2, 3, 0, pool_per_intent=4)
    assert again == sets


def test_test_dir_is_the_test_set_and_leaves_the_pool(snips, tmp_path):
    test_dir = tmp_path / "held_out"
    test_dir.mkdir()
    _snips_file(test_dir / "validate_PlayMusic.json", "PlayMusic",
                ["PlayMusic words a", "new one", "new two", "new 3", "Fernández"])
    sets, summary = prepare_slu.prepare_snips(snips, dev_per_intent=2, test_per_intent=0,
                                              seed=0, test_dir=test_dir)
    assert sorted(r["text"] for r in sets["test"]) == [
        "please fernandez", "please new one", "please new two", "please playmusic words a"]
    assert all(r["id"].startswith("snipstest-PlayMusic-") for r in sets["test"])
    pool = {r["text"] for r in sets["slu_train"]}
    assert not pool & {r["text"] for r in sets["test"]}  # the overlap leaves the pool
    assert summary["removed_as_held_out"] == {"slu_train": 1}
    assert summary["left_out_with_digits"]["test_dir"] == 1
    assert len(sets["dev"]) == 4 and summary["test_intents_not_in_pool"] == []
    # an intent the training files do not have is reported, and its rows kept
    _snips_file(test_dir / "validate_BookRestaurant.json", "BookRestaurant", ["a table"])
    sets, summary = prepare_slu.prepare_snips(snips, 2, 1, 0, test_dir=test_dir)
    assert summary["test_intents_not_in_pool"] == ["BookRestaurant"]
    assert sorted(r["intent"] for r in sets["test"]) == ["BookRestaurant", "PlayMusic"]
