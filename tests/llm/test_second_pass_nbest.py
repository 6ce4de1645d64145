"""The HyPoradise-form reader, its notes on bad input, and the speaker split rule."""
from __future__ import annotations

import json

import pytest

from speechlm.core.errors import InputError
from speechlm.llm.second_pass.nbest import (
    NbestItem,
    folds,
    groups_of,
    read_nbest,
    speaker_of,
    split_by_speaker,
)


def _write(tmp_path, rows, name="set.json"):
    p = tmp_path / name
    p.write_text(json.dumps(rows), encoding="utf-8")
    return p


def test_reads_the_hyporadise_form(tmp_path):
    rows = [{"instruction": "pick one", "input": ["a b c", "a b d"], "output": "a b c"},
            {"instruction": "pick one", "input": ["x y", "x z"], "output": "x z"}]
    items, notes = read_nbest(_write(tmp_path, rows))
    assert [it.utt for it in items] == ["set-00000", "set-00001"]
    assert items[1].hyps == ("x y", "x z") and items[1].ref == "x z"
    assert items[0].first_pass == (-0.0, -1.0) and notes == []


def test_reads_json_lines_with_ids_and_scores(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text('{"id": "1-2-3", "input": ["a", "b"], "output": "a", "scores": [-1, -3]}\n'
                 '\n{"id": "1-2-4", "input": ["c"], "output": "c"}\n', encoding="utf-8")
    items, _ = read_nbest(p)
    assert [it.utt for it in items] == ["1-2-3", "1-2-4"]
    assert items[0].first_pass == (-1.0, -3.0)


def test_bad_entries_become_notes_naming_the_utterance(tmp_path):
    rows = [{"id": "u-empty", "input": [], "output": "a"},
            {"id": "u-blank", "input": ["a", "  "], "output": "a"},
            {"id": "u-dup", "input": ["a b", "a  b", "c"], "output": "a b"},
            {"id": "u-noref", "input": ["a"]}]
    items, notes = read_nbest(_write(tmp_path, rows))
    got = {(n.utt, n.kind) for n in notes}
    assert got == {("u-empty", "empty_list"), ("u-blank", "empty_hypothesis"),
                   ("u-dup", "duplicate"), ("u-noref", "missing_reference")}
    by = {it.utt: it for it in items}
    assert by["u-empty"].hyps == () and by["u-blank"].hyps == ("a",)
    assert by["u-dup"].hyps == ("a b", "c") and by["u-noref"].ref is None
    assert all(n.utt in str(n) for n in notes)


def test_dropped_hypotheses_keep_their_scores_aligned(tmp_path):
    rows = [{"id": "u", "input": ["a", "", "a", "b"], "scores": [-1, -2, -3, -4], "output": "b"}]
    items, _ = read_nbest(_write(tmp_path, rows))
    assert items[0].hyps == ("a", "b") and items[0].scores == (-1.0, -4.0)


def test_non_utf8_names_the_utterance(tmp_path):
    p = tmp_path / "bad.json"
    good = json.dumps([{"id": "fine", "input": ["a"], "output": "a"}])[:-1]
    p.write_bytes(good.encode() + b', {"id": "broken", "input": ["caf\xe9"], "output": "x"}]')
    with pytest.raises(InputError, match=r"bad.json: not UTF-8 at byte \d+ \(utterance broken\)"):
        read_nbest(p)


@pytest.mark.parametrize("rows, match", [
    ([], "non-empty JSON list"),
    ([{"output": "a"}], "set-00000.*no 'input'"),
    ([{"id": "u", "input": ["a"]}, {"id": "u", "input": ["b"]}], "u .*duplicate utterance"),
    ([{"id": "u", "input": ["a", "b"], "scores": [1.0]}], "u: scores must be 2"),
    ([{"id": "u", "input": [1, 2]}], "u: 'input' must be a list of strings"),
])
def test_malformed_files_are_refused(tmp_path, rows, match):
    with pytest.raises(InputError, match=match):
        read_nbest(_write(tmp_path, rows))


def test_not_json_names_the_file(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("[{oops", encoding="utf-8")
    with pytest.raises(InputError, match="x.json: not valid JSON"):
        read_nbest(p)


def _items(utts):
    return [NbestItem(u, ("w",), "w") for u in utts]


def test_speaker_split_keeps_each_speaker_on_one_side():
    utts = [f"{s}-10-{k}" for s in (11, 12, 13, 14) for k in range(3 if s != 12 else 5)]
    a, b = split_by_speaker(_items(utts))
    sa, sb = {speaker_of(i.utt) for i in a}, {speaker_of(i.utt) for i in b}
    assert sa and sb and not sa & sb
    assert sa == {"11", "12"} and len(a) == 8 and len(b) == 6


def test_without_ids_contiguous_blocks_are_the_groups():
    items = _items([f"set-{i:05d}" for i in range(120)])
    assert groups_of(items, block=50)[49:51] == ["block-0000", "block-0001"]
    a, b = split_by_speaker(items, block=50)
    assert [i.utt for i in a] == [f"set-{i:05d}" for i in range(50)]
    assert len(b) == 70


def test_one_id_without_a_speaker_makes_all_blocks():
    items = _items(["1-2-3", "1-2-4", "odd"])
    assert groups_of(items, block=2) == ["block-0000", "block-0000", "block-0001"]


def test_folds_are_disjoint_and_cover_everything():
    utts = [f"{s}-1-{k}" for s in range(6) for k in range(2)]
    fs = folds(_items(utts), 2)
    spk = [{speaker_of(i.utt) for i in f} for f in fs]
    assert not spk[0] & spk[1] and sum(len(f) for f in fs) == len(utts)


def test_reads_our_own_nbest_jsonl_with_first_pass_scores_and_kaldi_refs(tmp_path):
    from speechlm.core.hypothesis import Hypothesis
    from speechlm.core.nbest_jsonl import write_nbest_jsonl
    from speechlm.llm.second_pass.run import load_set

    d = tmp_path / "decode_dev"
    d.mkdir()
    write_nbest_jsonl(d / "nbest.jsonl", {"u1": [Hypothesis("seven", -1.5),
                                                 Hypothesis("seven", -2.0),
                                                 Hypothesis("eleven", -3.25)]})
    notes = []
    s = load_set(str(d), notes, refs={"u1": "eleven"})
    assert s.name == "decode_dev" and s.items[0].ref == "eleven"
    assert s.items[0].hyps == ("seven", "eleven") and s.items[0].first_pass == (-1.5, -3.25)
    assert [n.kind for n in notes] == ["duplicate"]
