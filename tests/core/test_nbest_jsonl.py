"""nbest.jsonl: one writer, one reader, errors that name file, line and utterance."""
import json

import pytest

from speechlm.core.hypothesis import Hypothesis
from speechlm.core.nbest_jsonl import nbest_line, read_nbest_jsonl, write_nbest_jsonl


def test_round_trip(tmp_path):
    nbest = {"u1": [Hypothesis("a b", -1.0, scores=(("am", -0.5), ("lm", -0.5))),
                    Hypothesis("", -3.0)],
             "u2": [Hypothesis("c", -2.0)]}
    write_nbest_jsonl(tmp_path / "n.jsonl", nbest)
    back = read_nbest_jsonl(tmp_path / "n.jsonl")
    assert back == nbest
    assert read_nbest_jsonl(tmp_path / "n.jsonl", max_hyps=1)["u1"] == nbest["u1"][:1]
    assert json.loads(nbest_line("u2", nbest["u2"])) == {"utt": "u2", "hyps": [
        {"text": "c", "score": -2.0}]}


@pytest.mark.parametrize("line, message", [
    ('{"utt": "u", "hyps": [{"text": "a", "score": NaN}]}', r"n.jsonl:1: utterance 'u': "
     r"score nan of 'a' is not a finite number"),
    ('{"utt": "u", "hyps": [{"text": "a\\nb", "score": 1}]}', "holds a line break"),
    ('{"utt": "u", "hyps": [{"text": "a"}]}', r"n.jsonl:1: not an nbest.jsonl line"),
    ('{"utt": "u", "hyps": [{"text": 3, "score": 1}]}', "text must be a string"),
    ('{oops', r"n.jsonl:1: not an nbest.jsonl line"),
])
def test_bad_lines(tmp_path, line, message):
    (tmp_path / "n.jsonl").write_text(line + "\n")
    with pytest.raises(ValueError, match=message):
        read_nbest_jsonl(tmp_path / "n.jsonl")


def test_duplicate_and_empty(tmp_path):
    line = '{"utt": "u", "hyps": [{"text": "a", "score": -1}]}\n'
    (tmp_path / "n.jsonl").write_text(line + line)
    with pytest.raises(ValueError, match=r"n.jsonl:2: duplicate utterance 'u'"):
        read_nbest_jsonl(tmp_path / "n.jsonl")
    (tmp_path / "n.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="no utterances"):
        read_nbest_jsonl(tmp_path / "n.jsonl")
