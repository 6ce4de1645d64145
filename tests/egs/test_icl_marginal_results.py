"""egs/slurp/icl1/local/marginal_results.py (run.sh --tune_marginal): the dev choice, test
accuracy at the default and the dev-chosen settings, gap closed and their mean."""
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "egs" / "slurp" / "icl1" / "local" / "marginal_results.py"


def _acc(exp, m, sv, kind, a):
    d = exp / m / "icl_embedding" / sv / kind
    d.mkdir(parents=True)
    d.joinpath("accuracy.json").write_text(json.dumps({"accuracy": a, "total": 100}))


def _model(exp, m, best, dev_acc, rows):
    (exp / m).mkdir(parents=True)
    grid = [{"marginal_k": k, "wcn_path_scale": x, "accuracy": 0.5}
            for k in (1, 2, 8) for x in (0.0, 0.5, 1.0)]
    (exp / m / "marginal_wcn_marg.json").write_text(json.dumps(
        {"input": "wcn_marg", "best": best, "dev_accuracy": dev_acc, "candidates": grid,
         "seconds": 704.6}))
    for v, accs in rows.items():
        for kind, a in zip(("1best", "wcn_marg", "wcn_marg_tuned", "oracle"), accs,
                           strict=True):
            _acc(exp, m, f"test_{v}", kind, a)


def test_choice_gap_and_mean(tmp_path):
    exp = tmp_path / "exp"
    _model(exp, "espnet", {"marginal_k": 8, "wcn_path_scale": 0.5}, 0.5625,
           {"piper": (0.46, 0.48, 0.53, 0.60), "espeak": (0.44, 0.47, 0.45, 0.58)})
    _model(exp, "whisper", {"marginal_k": 2, "wcn_path_scale": 1.0}, 0.7, {})  # no test run
    cmd = [sys.executable, str(SCRIPT), "--exp", str(exp), "--models", "espnet", "whisper",
           "--sets", "test", "--voices", "piper", "espeak", "--inputs", "wcn_marg",
           "--cmdline", "./run.sh --tune_marginal wcn_marg"]
    subprocess.run(cmd, check=True, capture_output=True)
    md = (exp / "RESULTS_marginal.md").read_text()
    rows = [r for r in md.splitlines() if r.startswith("| espnet") or r.startswith("| mean")]
    assert rows[0] == ("| espnet | 1 2 8 x 0 0.5 1 (705 s) | 8, 0.5 | 56.2 | test | piper | "
                       "46.0 | 48.0 | 53.0 | 60.0 | 14% | 50% |")
    assert rows[1].endswith("| 44.0 | 47.0 | 45.0 | 58.0 | 21% | 7% |")
    # mean of the two rows: 45, 47.5, 49, 59 -> 18% and 29%
    assert rows[2] == "| mean of 2 rows | | | | | | 45.0 | 47.5 | 49.0 | 59.0 | 18% | 29% |"
    assert "whisper" not in md.split("## wcn_marg")[1]
    assert (exp / "RESULTS_marginal.png").stat().st_size > 1000


def test_no_tuned_results_fails(tmp_path):
    cmd = [sys.executable, str(SCRIPT), "--exp", str(tmp_path), "--models", "m", "--sets",
           "test", "--voices", "piper", "--inputs", "wcn_marg"]
    assert subprocess.run(cmd, capture_output=True).returncode == 1


def _pred(d, intents):
    d.mkdir(parents=True, exist_ok=True)
    d.joinpath("utt2intent").write_text("".join(f"u{j} {x}\n" for j, x in enumerate(intents)))


def test_paired_tests_per_row_and_pooled(tmp_path):
    exp, data = tmp_path / "exp", tmp_path / "data"
    _model(exp, "espnet", {"marginal_k": 8, "wcn_path_scale": 0.5}, 0.5,
           {"piper": (0.4, 0.4, 0.6, 0.8), "espeak": (0.4, 0.4, 0.6, 0.8)})
    truth = ["a"] * 10
    for v in ("piper", "espeak"):
        _pred(data / f"test_{v}", truth)
        base = exp / "espnet" / "icl_embedding" / f"test_{v}"
        _pred(base / "1best", ["a"] * 4 + ["b"] * 6)
        _pred(base / "wcn_marg", ["b"] + ["a"] * 3 + ["b"] * 6)
        # tuned: wins u4 u5 u6 over the 1-best, loses u0; u7 is missing (counted wrong)
        _pred(base / "wcn_marg_tuned", ["b"] + ["a"] * 6)
    cmd = [sys.executable, str(SCRIPT), "--exp", str(exp), "--data", str(data), "--models",
           "espnet", "--sets", "test", "--voices", "piper", "espeak", "--inputs", "wcn_marg"]
    subprocess.run(cmd, check=True, capture_output=True)
    md = (exp / "RESULTS_marginal.md").read_text()
    assert "- espnet test piper: vs 1-best +3/-1 (p=0.62), vs default +3/-0 (p=0.25)" in md
    assert "- pooled over 2 rows: vs 1-best +6/-2 (p=0.29), vs default +6/-0 (p=0.03)" in md


def test_models_tuned_by_an_earlier_run_stay_in_the_report(tmp_path):
    exp = tmp_path / "exp"
    _model(exp, "espnet", {"marginal_k": 8, "wcn_path_scale": 0.5}, 0.5,
           {"piper": (0.4, 0.4, 0.6, 0.8)})
    _model(exp, "whisper", {"marginal_k": 2, "wcn_path_scale": 1.0}, 0.7,
           {"piper": (0.7, 0.7, 0.72, 0.8)})
    cmd = [sys.executable, str(SCRIPT), "--exp", str(exp), "--models", "whisper", "--sets",
           "test", "--voices", "piper", "--inputs", "wcn_marg"]
    subprocess.run(cmd, check=True, capture_output=True)
    rows = [r.split(" | ")[0] for r in (exp / "RESULTS_marginal.md").read_text().splitlines()
            if r.startswith("| ") and "test" in r]
    assert rows == ["| whisper", "| espnet"]  # this run's first, then the earlier run's

