"""SNIPS benchmark files: the reader's rows, spans and errors, and the per-intent split."""
import json

import pytest

from speechlm.core.errors import InputError
from speechlm.data.snips import (
    SnipsEncodingWarning,
    read_snips_dir,
    read_snips_file,
    split_per_intent,
)


def _row(*chunks):
    return {"data": [dict(text=t, **({"entity": e} if e else {})) for t, e in chunks]}


def _write(path, obj):
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def test_rows_text_and_spans(tmp_path):
    f = _write(tmp_path / "train_GetWeather.json", {"GetWeather": [
        _row(("Will it rain in ", None), ("Paris", "city"), (" at ", None),
             ("noon", "timeRange")),
        _row(("weather  ", None), ("New   York", "city"))]})
    rows = read_snips_file(f)
    assert [(u.intent, u.row, u.text) for u in rows] == [
        ("GetWeather", 0, "Will it rain in Paris at noon"),
        ("GetWeather", 1, "weather  New   York")]
    assert rows[0].spans == (("city", "Paris"), ("timeRange", "noon"))
    assert rows[1].spans == (("city", "New York"),)


@pytest.mark.parametrize("obj, message", [
    ([{"data": []}], r"x\.json: not a SNIPS file"),
    ({"GetWeather": {"data": []}}, r"x\.json: not a SNIPS file"),
    ({"GetWeather": [_row(("hi", None)), {"text": "no data"}]},
     r"x\.json: GetWeather row 1: not a SNIPS row"),
    ({"GetWeather": [_row(("hi", None)), _row(("  ", None))]},
     r"x\.json: GetWeather row 1: no text"),
    ({"GetWeather": [{"data": [{"entity": "city"}]}]},
     r"x\.json: GetWeather row 0: chunk 0 has no 'text'"),
    ({"GetWeather": [{"data": [{"text": "hi", "entity": " "}]}]},
     r"GetWeather row 0: chunk 0 has an 'entity'"),
])
def test_bad_files_name_the_file_and_row(tmp_path, obj, message):
    f = _write(tmp_path / "x.json", obj)
    with pytest.raises(InputError, match=message):
        read_snips_file(f)


def test_not_json_names_the_file(tmp_path):
    f = tmp_path / "x.json"
    f.write_text('{"GetWeather": [', encoding="utf-8")
    with pytest.raises(InputError, match=r"x\.json: not JSON"):
        read_snips_file(f)
    with pytest.raises(InputError, match="no SNIPS file matches 'validate_"):
        read_snips_dir(tmp_path, "validate_*.json")


def test_invalid_utf8_is_replaced_and_the_row_named(tmp_path):
    f = tmp_path / "train_PlayMusic_full.json"
    good = json.dumps({"PlayMusic": [_row(("play ", None), ("jazz", "genre")),
                                     _row(("play ", None), ("BAD", "playlist"))]})
    f.write_bytes(good.encode().replace(b"BAD", b"B\xe9\xff D"))
    with pytest.warns(SnipsEncodingWarning, match=r"train_PlayMusic_full\.json: invalid UTF-8 "
                      r"bytes read as U\+FFFD .* in PlayMusic row 1$"):
        rows = read_snips_file(f)
    assert rows[1].text == "play B\ufffd\ufffd D" and rows[1].spans == (
        ("playlist", "B\ufffd\ufffd D"),)


def _rows(n_a, n_b):
    return ([{"id": f"a{i}", "text": f"a sentence {i}", "intent": "A"} for i in range(n_a)]
            + [{"id": f"b{i}", "text": f"b sentence {i}", "intent": "B"} for i in range(n_b)])


def test_split_per_intent_sizes_disjoint_and_seeded():
    rows = _rows(20, 9) + [{"id": "a-dup", "text": "a sentence 3", "intent": "A"}]
    parts = split_per_intent(rows, n_dev=2, n_test=3, seed=7)
    for p, n in (("dev", 2), ("test", 3)):
        assert sorted(r["intent"] for r in parts[p]) == ["A"] * n + ["B"] * n
    texts = {p: {r["text"] for r in parts[p]} for p in parts}
    assert not (texts["train"] & texts["dev"] or texts["train"] & texts["test"]
                or texts["dev"] & texts["test"])
    assert sum(len(v) for v in parts.values()) == len(rows) - (
        "a sentence 3" not in texts["train"])  # a held-out sentence keeps one row
    assert parts == split_per_intent(rows, n_dev=2, n_test=3, seed=7)
    other = split_per_intent(rows, n_dev=2, n_test=3, seed=8)
    assert {r["id"] for r in other["test"]} != {r["id"] for r in parts["test"]}
    # the draw of one intent does not depend on the other intents' rows
    only_a = split_per_intent(_rows(20, 0), n_dev=2, n_test=3, seed=7)
    assert [r["id"] for r in only_a["test"]] == [r["id"] for r in parts["test"]
                                                 if r["intent"] == "A"]


def test_split_keeps_sentences_of_two_intents_in_training():
    rows = _rows(2, 2) + [{"id": "x", "text": "a sentence 0", "intent": "B"}]
    parts = split_per_intent(rows, n_dev=0, n_test=5, seed=0)
    assert {r["id"] for r in parts["test"]} == {"a1", "b0", "b1"}
    assert {r["id"] for r in parts["train"]} == {"a0", "x"}


def test_docstring_examples_run():
    import doctest

    import speechlm.data.snips

    result = doctest.testmod(speechlm.data.snips)
    assert result.attempted > 0 and result.failed == 0
