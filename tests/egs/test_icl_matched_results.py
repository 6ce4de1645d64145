"""egs/slurp/icl1/local/matched_results.py (local/matched_shots.sh): shots shown as text or in
the query's form, beside the main run, the mean over tables, and paired wins and losses."""
import subprocess
import sys
from pathlib import Path

from icl_results_testdata import write_pred, write_refs

SCRIPT = Path(__file__).parents[2] / "egs" / "slurp" / "icl1" / "local" / "matched_results.py"
def _pred(d: Path, right: int, pool: Path) -> None:
    write_pred(d, right, shots_from={"data_dir": str(pool)})


def _run(exp: Path, data: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--exp", str(exp), "--data", str(data),
                           "--models", "a", "--sets", "test", "--voices", "piper", "espeak",
                           "--inputs", "1best", "wcn", "oracle",
                           "--cmdline", "local/matched_shots.sh x"],
                          capture_output=True, text=True)


def test_matched_beside_text_shots_with_gap_and_paired_counts(tmp_path):
    exp, data = tmp_path / "exp", tmp_path / "data"
    pool = data / "pool"
    pool.mkdir(parents=True)
    (pool / "text").write_text("p1 set an alarm\np2 play jazz\np3 wake me up\n")
    write_refs(data, ["test_piper", "test_espeak"])
    runs = {"text_shots": (4, 5, 8), "matched": (6, 8, 8), "main": (5, 5, 9)}
    for voice in ("piper", "espeak"):
        for run, rights in runs.items():
            base = (exp / "a" / "icl_embedding" / f"test_{voice}" if run == "main"
                    else exp / "a" / "icl_matched" / "embedding" / run / f"test_{voice}")
            for kind, right in zip(("1best", "wcn", "oracle"), rights, strict=True):
                _pred(base / kind, right, pool)
    (exp / "a" / "icl_matched" / "embedding" / "command.txt").write_text("matched_shots.sh a\n")
    res = _run(exp, data)
    assert res.returncode == 0, res.stderr
    md = (exp / "RESULTS_matched.md").read_text()
    assert "a: 3 sentences" in md
    assert "a's matched-shot run: `matched_shots.sh a`" in md
    assert "| shots | 1best | wcn | oracle | gap closed (wcn) |" in md
    assert "| text_shots | 40.0 | 50.0 | 80.0 | 25% |" in md
    assert "| matched | 60.0 | 80.0 | 80.0 | 100% |" in md
    assert "| main run | 50.0 | 50.0 | 90.0 | 0% |" in md
    assert "| matched | 2 | 60.0 | 80.0 | 80.0 | 100% |" in md  # mean over both voices
    # wcn: utterances 5-7 right only with matched shots, in each of the two tables
    assert "- `matched`, wcn: +6/-0 (p=0.03)" in md
    assert "- `main run`, " not in md  # other shots: not a paired test of the shots' form
    assert (exp / "RESULTS_matched.png").is_file()


def test_no_matched_run_is_an_error(tmp_path):
    res = _run(tmp_path / "exp", tmp_path / "data")
    assert res.returncode == 1 and "no matched-shot results found" in res.stderr
