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
