"""egs/slurp/icl1/local/wcn_sweep_results.py (run.sh --wcn_sweep): the threshold table, the
no-posteriors column and gap closed from a small made-up exp dir."""
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "egs" / "slurp" / "icl1" / "local" / "wcn_sweep_results.py"


def _acc(d: Path, a: float) -> None:
    d.mkdir(parents=True)
    d.joinpath("accuracy.json").write_text(json.dumps({"accuracy": a, "total": 10}))


def _system(exp, m, v, wer, main, sweep, noprob):
    dec = exp / m / f"decode_test_{v}"
    dec.mkdir(parents=True)
    dec.joinpath("oracle_wer").write_text(f"%WER {wer:.2f} [ 1 / 10, 10 utts ] 1-best\n")
    for kind, a in main.items():
        _acc(exp / m / "icl_embedding" / f"test_{v}" / kind, a)
    for t, a in sweep.items():  # the directory names as run.sh writes them
        _acc(exp / m / "icl_wcn" / "embedding" / f"test_{v}" / f"t{t}", a)
    if noprob is not None:
        _acc(exp / m / "icl_wcn" / "embedding" / f"test_{v}" / "noprob", noprob)


def test_wcn_table_gap_and_plot(tmp_path):
    exp = tmp_path / "exp"
    _system(exp, "pocketsphinx", "piper", 40.0, {"1best": 0.5, "wcn": 0.6, "oracle": 0.7},
            {"0.05": 0.55, "0.4": 0.5}, 0.65)
    _system(exp, "whisper-tiny.en", "piper", 25.0, {"1best": 0.8, "wcn": 0.8, "oracle": 0.81},
            {"0.05": 0.7}, None)
    cmd = [sys.executable, str(SCRIPT), "--exp", str(exp),
           "--models", "whisper-tiny.en", "pocketsphinx", "--sets", "test",
           "--voices", "piper", "espeak", "--thresholds", "0.05", "0.4",
           "--main_threshold", "0.1", "--cmdline", "./run.sh --wcn_sweep '0.05 0.4'"]
    subprocess.run(cmd, check=True, capture_output=True)
    md = (exp / "RESULTS_wcn.md").read_text()
    assert "| t=0.05 | t=0.1 (main) | t=0.4 | no post. |" in md
    rows = {r.split(" | ")[0]: r for r in md.splitlines() if r.startswith("| ") and "test" in r}
    # thresholds in order, the main run's WCN at t=0.1; best t (0.1: 60) closes half the gap
    assert rows["| pocketsphinx"].endswith(
        "| 40.0 | 50.0 | 55.0 | 60.0 | 50.0 | 65.0 | 70.0 | 50% |")
    # a missing threshold or no-posteriors run is '-'; oracle 1 point above: no gap closed
    assert rows["| whisper-tiny.en"].endswith("| 25.0 | 80.0 | 70.0 | 80.0 | - | - | 81.0 | - |")
    assert "espeak" not in md  # no results for that voice: no row
    assert (exp / "RESULTS_wcn.png").stat().st_size > 1000


def test_no_results_fails(tmp_path):
    cmd = [sys.executable, str(SCRIPT), "--exp", str(tmp_path), "--models", "m", "--sets",
           "test", "--voices", "piper", "--thresholds", "0.2", "--main_threshold", "0.1"]
    assert subprocess.run(cmd, capture_output=True).returncode == 1
