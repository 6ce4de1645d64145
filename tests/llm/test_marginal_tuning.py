"""speechlm.llm.marginal_tuning: dev references, the grid's order and the choice."""
import pytest

from speechlm.llm.marginal_tuning import best_candidate, read_dev_references, tune_marginal
from speechlm.llm.serialize import SerializeConfig


def _data(root, name, lines):
    d = root / name
    d.mkdir()
    (d / "utt2intent").write_text("".join(f"{u} {i}\n" for u, i in lines))
    return d


def test_dev_sets_pool_and_refuse_a_repeated_utterance(tmp_path):
    a = _data(tmp_path, "a", [("u1", "x"), ("u2", "y")])
    b = _data(tmp_path, "b", [("u3", "x")])
    assert read_dev_references([(tmp_path, a), (tmp_path, b)]) == {"u1": "x", "u2": "y",
                                                                  "u3": "x"}
    c = _data(tmp_path, "c", [("u2", "x")])
    with pytest.raises(ValueError, match="'u2'.*also in an earlier dev set"):
        read_dev_references([(tmp_path, a), (tmp_path, c)])


def test_best_candidate_prefers_fewer_hypotheses_then_the_weights_as_they_are():
    rows = [{"marginal_k": 4, "wcn_path_scale": 0.0, "accuracy": 0.5},
            {"marginal_k": 2, "wcn_path_scale": 0.0, "accuracy": 0.5},
            {"marginal_k": 2, "wcn_path_scale": 0.5, "accuracy": 0.5},
            {"marginal_k": 8, "wcn_path_scale": 1.0, "accuracy": 0.4}]
    assert best_candidate(rows) is rows[2]
    rows[3]["accuracy"] = 0.6
    assert best_candidate(rows) is rows[3]


class _Recorder:
    """Stands in for IntentClassifier: records what each candidate is asked."""

    def __init__(self):
        self.asked = []

    def predict(self, inputs, progress=True):
        self.asked.append((progress, inputs))
        return {u: "x" for u in inputs}


def test_grid_runs_the_largest_k_first_with_each_scale(tmp_path):
    dec = tmp_path / "dec"
    dec.mkdir()
    (dec / "nbest.jsonl").write_text(
        '{"utt": "u1", "hyps": [{"text": "a", "score": 0.0}, {"text": "b", "score": -1.0}]}\n')
    data = _data(tmp_path, "data", [("u1", "x"), ("u2", "y")])  # u2: no output, empty hyp
    clf = _Recorder()
    rows = tune_marginal(clf, "nbest_marg", SerializeConfig(), [(dec, data)], [1, 2], [0.0, 1.0])
    assert [(r["marginal_k"], r["nbest_scale"]) for r in rows] == [(2, 0.0), (2, 1.0),
                                                                   (1, 0.0), (1, 1.0)]
    assert [p for p, _ in clf.asked] == [True, False, False, False]  # one progress bar
    assert clf.asked[0][1]["u1"] == [("a", 0.5), ("b", 0.5)]  # scale 0: equal weights
    assert clf.asked[0][1]["u2"] == [("", 1.0)]
    assert all(r["accuracy"] == 0.5 and r["total"] == 2 for r in rows)
    with pytest.raises(ValueError, match="tunes"):
        tune_marginal(clf, "wcn", SerializeConfig(), [(dec, data)], [1], [1.0])
