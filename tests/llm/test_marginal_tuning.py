"""speechlm.llm.marginal_tuning: dev references, the grid's order and the choice."""
import pytest

from speechlm.llm.marginal_tuning import (
    ScoreTable,
    best_candidate,
    candidates,
    grid_texts,
    read_dev_references,
    tune_marginal,
)
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
    """Stands in for IntentClassifier: records the hypotheses it is asked to rank; label
    ``x`` wins after ``a``, ``y`` after anything else."""

    labels = ["x", "y"]

    def __init__(self):
        self.asked = []

    def scores(self, text, utt="?"):
        self.asked.append(text)
        return [0.0, -1.0] if text == "a" else [-1.0, 0.0]


def _nbest(tmp_path):
    dec = tmp_path / "dec"
    dec.mkdir()
    (dec / "nbest.jsonl").write_text(
        '{"utt": "u1", "hyps": [{"text": "a", "score": 0.0}, {"text": "b", "score": -1.0}]}\n')
    data = _data(tmp_path, "data", [("u1", "x"), ("u2", "y")])  # u2: no output, empty hyp
    return dec, data


def test_grid_runs_the_largest_k_first_with_each_scale(tmp_path):
    dec, data = _nbest(tmp_path)
    refs = read_dev_references([(dec, data)])
    grid = list(candidates("nbest_marg", SerializeConfig(), [(dec, data)], refs, [1, 2],
                           [0.0, 1.0]))
    assert [(k, s) for k, s, _ in grid] == [(2, 0.0), (2, 1.0), (1, 0.0), (1, 1.0)]
    assert grid[0][2]["u1"] == [("a", 0.5), ("b", 0.5)]  # scale 0: equal weights
    assert grid[0][2]["u2"] == [("", 1.0)]
    assert grid[2][2]["u1"] == [("a", 1.0)]
    clf = _Recorder()
    rows = tune_marginal(clf, "nbest_marg", SerializeConfig(), [(dec, data)], [1, 2], [0.0, 1.0])
    assert [(r["marginal_k"], r["nbest_scale"]) for r in rows] == [(2, 0.0), (2, 1.0),
                                                                   (1, 0.0), (1, 1.0)]
    assert clf.asked[:3] == ["a", "b", ""]
    # u2 (empty hypothesis -> y) is right everywhere; u1 is x only where "a" outweighs "b":
    # scale 0 ties the two (x wins the tie: the first label), scale 1 favours "a"
    assert all(r["accuracy"] == 1.0 and r["total"] == 2 for r in rows)
    with pytest.raises(ValueError, match="tunes"):
        tune_marginal(clf, "wcn", SerializeConfig(), [(dec, data)], [1], [1.0])


def test_a_table_of_scores_gives_the_classifier_rows(tmp_path):
    dec, data = _nbest(tmp_path)
    args = ("nbest_marg", SerializeConfig(), [(dec, data)], [1, 2], [0.0, 1.0])
    texts = grid_texts(*args)
    assert texts == ["a", "b", ""]  # each hypothesis once, the empty one of u2 included
    rec = _Recorder()
    table = ScoreTable(rec.labels, {t: rec.scores(t) for t in texts})
    assert tune_marginal(table, *args) == tune_marginal(_Recorder(), *args)
    with pytest.raises(KeyError, match="u9.*'zzz' was not scored"):
        table.scores("zzz", "u9")
