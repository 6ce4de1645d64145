"""egs/slurp/icl1/local/noise_results.py (run.sh --noise_levels): the accuracy-vs-WER table,
gap closed and plot from a small made-up exp dir."""
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "egs" / "slurp" / "icl1" / "local" / "noise_results.py"


def _set(exp, s, v, wer, oracle_wer, acc):
    d = exp / "whisper-tiny.en" / f"decode_{s}_{v}"
    d.mkdir(parents=True)
    d.joinpath("oracle_wer").write_text(
        f"%WER {wer:.2f} [ 1 / 10, 10 utts ] 1-best\n"
        f"%WER {oracle_wer:.2f} [ 1 / 10, 10 utts ] WCN oracle\n")
    for kind, a in acc.items():
        k = exp / "whisper-tiny.en" / "icl_embedding" / f"{s}_{v}" / kind
        k.mkdir(parents=True)
        k.joinpath("accuracy.json").write_text(json.dumps({"accuracy": a, "total": 10}))


def test_noise_table_gap_and_plot(tmp_path):
    exp = tmp_path / "exp"
    _set(exp, "test_snr20", "piper", 20.0, 15.0, {"1best": 0.8, "wcn": 0.8, "oracle": 0.82})
    _set(exp, "test_snrm5", "piper", 70.0, 60.0, {"1best": 0.4, "wcn": 0.5, "oracle": 0.6})
    _set(exp, "test", "piper", 25.0, 20.0, {"1best": 0.7, "wcn": 0.7, "oracle": 0.7,
                                            "text": 0.9})
    cmd = [sys.executable, str(SCRIPT), "--exp", str(exp), "--models", "whisper-tiny.en",
           "--voices", "piper", "espeak", "--levels", "20", "-5", "10",
           "--inputs", "1best", "wcn", "oracle", "--cmdline", "./run.sh"]
    subprocess.run(cmd, check=True, capture_output=True)
    md = (exp / "RESULTS_noise.md").read_text()
    rows = [r for r in md.splitlines() if r.startswith("| ") and "piper" in r]
    # levels from high SNR to low (10 dB has no results: no row), then the main test set
    assert [r.split(" | ")[0] for r in rows] == ["| 20", "| -5", "| 10-30"]
    assert rows[0].endswith("| 20.0 | 15.0 | 80.0 | 80.0 | 82.0 | +0.0 | - |")  # gap < 3 points
    assert rows[1].endswith("| 70.0 | 60.0 | 40.0 | 50.0 | 60.0 | +10.0 | 50% |")
    assert "Reference text (the ceiling): 90.0." in md
    assert (exp / "RESULTS_noise.png").stat().st_size > 1000


def test_no_results_fails(tmp_path):
    cmd = [sys.executable, str(SCRIPT), "--exp", str(tmp_path), "--models", "m",
           "--voices", "piper", "--levels", "0", "--inputs", "1best"]
    assert subprocess.run(cmd, capture_output=True).returncode == 1


def test_marginal_inputs_get_difference_and_gap_columns(tmp_path):
    exp = tmp_path / "exp"
    _set(exp, "test_snr5", "piper", 40.0, 30.0,
         {"1best": 0.5, "nbest_marg": 0.55, "wcn_marg": 0.6, "oracle": 0.7})
    cmd = [sys.executable, str(SCRIPT), "--exp", str(exp), "--models", "whisper-tiny.en",
           "--voices", "piper", "--levels", "5",
           "--inputs", "1best", "nbest_marg", "wcn_marg", "oracle", "--cmdline", "./run.sh"]
    subprocess.run(cmd, check=True, capture_output=True)
    md = (exp / "RESULTS_noise.md").read_text()
    head = next(r for r in md.splitlines() if r.startswith("| SNR"))
    assert head.endswith("| nbest_marg - 1best | wcn_marg - 1best | gap closed (wcn_marg) |")
    row = next(r for r in md.splitlines() if r.startswith("| 5 "))
    assert row.endswith("| 50.0 | 55.0 | 60.0 | 70.0 | +5.0 | +10.0 | 50% |")


def test_tuned_input_is_compared_like_its_kind(tmp_path):
    exp = tmp_path / "exp"
    _set(exp, "test_snr0", "piper", 60.0, 50.0,
         {"1best": 0.4, "wcn_marg": 0.45, "wcn_marg_tuned": 0.5, "oracle": 0.6})
    cmd = [sys.executable, str(SCRIPT), "--exp", str(exp), "--models", "whisper-tiny.en",
           "--voices", "piper", "--levels", "0", "--inputs", "1best", "wcn_marg",
           "wcn_marg_tuned", "oracle", "--cmdline", "./run.sh"]
    subprocess.run(cmd, check=True, capture_output=True)
    md = (exp / "RESULTS_noise.md").read_text()
    head = next(r for r in md.splitlines() if r.startswith("| SNR"))
    assert head.endswith("| wcn_marg - 1best | wcn_marg_tuned - 1best | gap closed (wcn_marg) "
                         "| gap closed (wcn_marg_tuned) |")
    row = next(r for r in md.splitlines() if r.startswith("| 0 "))
    assert row.endswith("| 40.0 | 45.0 | 50.0 | 60.0 | +5.0 | +10.0 | 25% | 50% |")
