"""egs/slurp/icl1/local/paired.py: exact McNemar tests and the paired bootstrap interval of
the mean gap closed; make_results.py prints both under its mean table."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

LOCAL = Path(__file__).parents[2] / "egs" / "slurp" / "icl1" / "local"


@pytest.fixture
def paired(monkeypatch):
    monkeypatch.syspath_prepend(str(LOCAL))
    import paired

    return paired


def test_small_p_values_keep_their_digits(paired):
    assert paired.mcnemar(3, 1) == "+3/-1 (p=0.62)"
    assert paired.mcnemar(9, 0) == "+9/-0 (p=0.004)"  # two decimals would print 0.00
    assert paired.mcnemar(40, 0) == "+40/-0 (p=2e-12)"
    assert paired.mcnemar(0, 0) == "+0/-0 (p=1.00)"


def _row(rng, n, p_one, p_new, p_orc):
    return {"1best": rng.random(n) < p_one, "wcn_marg": rng.random(n) < p_new,
            "oracle": rng.random(n) < p_orc}


def test_bootstrap_interval_holds_the_point_and_pairs_the_inputs(paired):
    rng = np.random.default_rng(1)
    rows = [_row(rng, 100, 0.45, 0.5, 0.6), _row(rng, 100, 0.3, 0.35, 0.4)]
    b = paired.bootstrap_gap(rows, "wcn_marg", resamples=500)
    mean = {k: np.mean([100 * r[k].mean() for r in rows]) for k in ("1best", "wcn_marg", "oracle")}
    point = (mean["wcn_marg"] - mean["1best"]) / (mean["oracle"] - mean["1best"])
    assert b["diff"][0] < mean["wcn_marg"] - mean["1best"] < b["diff"][1]
    assert b["closed"][0] < point < b["closed"][1]
    assert 0.0 < b["closed_at_least_half"] < 1.0
    # an input equal to the oracle closes the whole gap in every resample: only a paired
    # draw (one index set for the three inputs) gives exactly 100%
    same = [{**r, "wcn_marg": r["oracle"]} for r in rows]
    b = paired.bootstrap_gap(same, "wcn_marg", resamples=200)
    assert b["closed"] == pytest.approx((1.0, 1.0))
    assert b["closed_at_least_half"] == 1.0


def test_resamples_without_a_gap_are_counted_not_divided(paired):
    rows = [{"1best": np.array([True, False] * 10), "wcn_marg": np.array([True, True] * 10),
             "oracle": np.array([True, False] * 10)}]  # no gap at all
    b = paired.bootstrap_gap(rows, "wcn_marg", resamples=50)
    assert b["no_gap"] == 50
    assert np.isnan(b["closed"][0])


def _preds(d, labels):
    d.mkdir(parents=True)
    d.joinpath("utt2intent").write_text("".join(f"u{i} {x}\n" for i, x in enumerate(labels)))


def test_make_results_prints_the_spread_of_the_mean(tmp_path):
    exp, data = tmp_path / "exp", tmp_path / "data"
    truth = ["a"] * 10
    # per first pass: 1-best right on 4 / 5, wcn_marg on 6 / 6, oracle on 8 / 7 of 10
    right = {"espnet": {"1best": 4, "wcn_marg": 6, "oracle": 8},
             "pocketsphinx": {"1best": 5, "wcn_marg": 6, "oracle": 7}}
    _preds(data / "test_piper", truth)
    for m, acc in right.items():
        for kind, n in acc.items():
            d = exp / m / "icl_embedding" / "test_piper" / kind
            _preds(d, ["a"] * n + ["b"] * (10 - n))
            d.joinpath("accuracy.json").write_text(json.dumps({"accuracy": n / 10, "total": 10}))
    lines = {}
    for models in (["espnet", "pocketsphinx"], ["pocketsphinx", "espnet"]):
        cmd = [sys.executable, str(LOCAL / "make_results.py"), "--exp", str(exp), "--data",
               str(data), "--models", *models, "--sets", "test", "--voices", "piper",
               "--selections", "embedding", "--llm", "smollm2-135m-instruct", "--shots", "8"]
        subprocess.run(cmd, check=True, capture_output=True)
        md = (exp / "RESULTS.md").read_text()
        lines[models[0]] = next(x for x in md.splitlines()
                                if x.startswith("- embedding, test, `wcn_marg`"))
    line = lines["espnet"]
    # wcn_marg right wherever the 1-best is (utterances 0-3 / 0-4): won 2 + 1, lost none
    assert line.endswith("pooled McNemar +3/-0 (p=0.25)")
    assert "gap closed" in line and "at least 50% in" in line
    # the same predictions give the same intervals whatever order --models lists them in
    assert lines["pocketsphinx"] == line
