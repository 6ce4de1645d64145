"""egs/slurp/icl1/local/shot_sweep_results.py (run.sh --shots_sweep): accuracy per shot count,
the main run as its own count, and the gap closed of every input between 1-best and oracle."""
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = (Path(__file__).parents[2] / "egs" / "slurp" / "icl1" / "local"
          / "shot_sweep_results.py")


def _acc(d: Path, acc: float) -> None:
    d.mkdir(parents=True)
    d.joinpath("accuracy.json").write_text(json.dumps({"accuracy": acc}))


def test_sweep_table_with_marginalized_input(tmp_path):
    exp = tmp_path / "exp"
    runs = {0: (0.1, 0.2, 0.2), 2: (0.4, 0.6, 0.5), 8: (0.5, 0.6, 0.9)}  # 1best, wcn_marg, oracle
    for n, accs in runs.items():
        base = (exp / "m" / "icl_embedding" / "test_piper" if n == 8
                else exp / "m" / "icl_shots" / "embedding" / str(n) / "test_piper")
        for kind, acc in zip(("1best", "wcn_marg", "oracle"), accs, strict=True):
            _acc(base / kind, acc)
    subprocess.run([sys.executable, str(SCRIPT), "--exp", str(exp), "--models", "m", "--sets",
                    "test", "--voices", "piper", "espeak", "--inputs", "1best", "wcn_marg",
                    "oracle", "--shots", "0", "2", "--main_shots", "8"],
                   check=True, capture_output=True)
    md = (exp / "RESULTS_shots.md").read_text()
    assert "| shots | 1best | wcn_marg | oracle | gap closed (wcn_marg) |" in md
    assert "| 0 | 10.0 | 20.0 | 20.0 | 100% |" in md
    assert "| 2 | 40.0 | 60.0 | 50.0 | 200% |" in md
    assert "| 8 | 50.0 | 60.0 | 90.0 | 25% |" in md
    assert "espeak" not in md
    mean = md.split("## Mean over first passes and voices")[1].split("## m,")[0]
    assert "| shots | rows | 1best | wcn_marg | oracle | gap closed (wcn_marg) |" in mean
    assert "| 2 | 1 | 40.0 | 60.0 | 50.0 | 200% |" in mean


def test_mean_over_rows_with_every_input(tmp_path):
    exp = tmp_path / "exp"
    accs = {("a", "piper"): {0: (0.2, 0.4, 0.6), 2: (0.5, 0.6, 0.7)},
            ("b", "piper"): {0: (0.4, 0.4, 0.6), 2: (0.5, None, 0.9)}}  # b: no wcn_marg at 2
    for (m, v), runs in accs.items():
        for n, vals in runs.items():
            for kind, acc in zip(("1best", "wcn_marg", "oracle"), vals, strict=True):
                if acc is not None:
                    _acc(exp / m / "icl_shots" / "embedding" / str(n) / f"test_{v}" / kind, acc)
    subprocess.run([sys.executable, str(SCRIPT), "--exp", str(exp), "--models", "a", "b",
                    "--sets", "test", "--voices", "piper", "--inputs", "1best", "wcn_marg",
                    "oracle", "--shots", "0", "2", "--main_shots", "8"],
                   check=True, capture_output=True)
    mean = (exp / "RESULTS_shots.md").read_text().split("## a, test")[0]
    assert "| 0 | 2 | 30.0 | 40.0 | 60.0 | 33% |" in mean
    assert "| 2 | 1 | 50.0 | 60.0 | 70.0 | 50% |" in mean  # b lacks an input at 2: left out
    assert "| 8 |" not in mean


def test_report_keeps_every_swept_first_pass_and_its_command(tmp_path):
    # a sweep run for first pass "b" alone must not drop "a"'s earlier sweep from the report
    exp = tmp_path / "exp"
    for m, counts in (("a", (0, 2)), ("b", (0, 4))):
        sweep = exp / m / "icl_shots" / "embedding"
        for n in counts:
            _acc(sweep / str(n) / "test_piper" / "1best", 0.1 * n)
        (sweep / "command.txt").write_text(f"./run.sh --asr_models {m}\n")
    _acc(exp / "c" / "icl_embedding" / "test_piper" / "1best", 0.5)  # main run only, no sweep
    subprocess.run([sys.executable, str(SCRIPT), "--exp", str(exp), "--models", "b", "c",
                    "--sets", "test", "--voices", "piper", "--inputs", "1best",
                    "--shots", "0", "4", "--main_shots", "8"], check=True, capture_output=True)
    md = (exp / "RESULTS_shots.md").read_text()
    assert md.index("## b, test, piper") < md.index("## a, test, piper")  # --models' order first
    assert "a's sweep: `./run.sh --asr_models a`" in md
    assert "b's sweep: `./run.sh --asr_models b`" in md
    a_table = md.split("## a, test, piper")[1]
    assert "| 2 | 20.0 |" in a_table and "| 4 |" not in a_table  # only the counts "a" swept
    assert "## c," not in md
