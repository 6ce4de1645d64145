"""egs/slurp/icl1/local/selection_results.py (run.sh with several --selections): accuracy
per input and shot selection, the gap closed of every input between 1-best and oracle, the
reference text read from the first first pass, and McNemar tests against the first selection
pooled over sets."""
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = (Path(__file__).parents[2] / "egs" / "slurp" / "icl1" / "local"
          / "selection_results.py")


def _run(exp, m, sel, sv, kind, right, total=10):
    d = exp / m / f"icl_{sel}" / sv / kind
    d.mkdir(parents=True)
    d.joinpath("accuracy.json").write_text(json.dumps({"accuracy": right / total,
                                                       "total": total}))
    # utterances u0.. u{right-1} right, the rest wrong
    d.joinpath("utt2intent").write_text("".join(
        f"u{j} {'a' if j < right else 'b'}\n" for j in range(total)))


def test_selections_side_by_side(tmp_path):
    exp, data = tmp_path / "exp", tmp_path / "data"
    for v in ("piper", "espeak"):
        (data / f"test_{v}").mkdir(parents=True)
        (data / f"test_{v}" / "utt2intent").write_text("".join(f"u{j} a\n" for j in range(10)))
    for sel, accs in {"embedding": (9, 5, 6, 8), "random": (8, 4, 4, 8)}.items():
        _run(exp, "whisper", sel, "test_piper", "text", accs[0])
        for kind, right in zip(("1best", "wcn", "oracle"), accs[1:], strict=True):
            _run(exp, "whisper", sel, "test_piper", kind, right)
            _run(exp, "espnet", sel, "test_piper", kind, right)
    _run(exp, "espnet", "embedding", "test_espeak", "1best", 3)  # one run: no table
    cmd = [sys.executable, str(SCRIPT), "--exp", str(exp), "--models", "whisper", "espnet",
           "--sets", "test", "--voices", "piper", "espeak", "--inputs", "text", "1best", "wcn",
           "oracle", "--selections", "embedding", "random", "--data", str(data)]
    subprocess.run(cmd, check=True, capture_output=True)
    md = (exp / "RESULTS_selection.md").read_text()
    assert "## whisper, test, piper" in md and "## espnet, test, piper" in md
    assert "test, espeak" not in md
    espnet = md.split("## espnet, test, piper")[1]
    # espnet's text column is whisper's (classified once a set)
    assert "| embedding | 90.0 | 50.0 | 60.0 | 80.0 | 33% |" in espnet
    assert "| random | 80.0 | 40.0 | 40.0 | 80.0 | 0% |" in espnet
    # pooled over both tables: wcn 6 -> 4 right twice: random loses 4 utterances, wins none
    assert "- `wcn`, random vs embedding: +0/-4 (p=0.12)" in md
    assert "- `oracle`, random vs embedding: +0/-0 (p=1.00)" in md
    assert "- `text`, random vs embedding: +0/-1 (p=1.00)" in md  # once, not once a table
    assert (exp / "RESULTS_selection.png").stat().st_size > 1000


def test_gap_closed_of_every_input_between_1best_and_oracle(tmp_path):
    # a run without a plain `wcn` still gets its inputs' gap closed (here wcn_marg, nbest)
    exp = tmp_path / "exp"
    for sel, accs in {"embedding": (5, 7, 4, 9), "random": (2, 2, 3, 6)}.items():
        for kind, right in zip(("1best", "wcn_marg", "nbest", "oracle"), accs, strict=True):
            _run(exp, "m", sel, "test_piper", kind, right)
    subprocess.run([sys.executable, str(SCRIPT), "--exp", str(exp), "--models", "m", "--sets",
                    "test", "--voices", "piper", "--inputs", "1best", "wcn_marg", "nbest",
                    "oracle", "--selections", "embedding", "random"],
                   check=True, capture_output=True)
    md = (exp / "RESULTS_selection.md").read_text()
    assert ("| selection | 1best | wcn_marg | nbest | oracle | gap closed (wcn_marg) | "
            "gap closed (nbest) |") in md
    assert "| embedding | 50.0 | 70.0 | 40.0 | 90.0 | 50% | -25% |" in md
    assert "| random | 20.0 | 20.0 | 30.0 | 60.0 | 0% | 25% |" in md


def test_one_selection_is_refused_and_no_runs_fail(tmp_path):
    base = [sys.executable, str(SCRIPT), "--exp", str(tmp_path), "--models", "m", "--sets",
            "test", "--voices", "piper", "--inputs", "wcn"]
    one = subprocess.run([*base, "--selections", "embedding"], capture_output=True, text=True)
    assert one.returncode == 2 and "two or more" in one.stderr
    none = subprocess.run([*base, "--selections", "embedding", "random"], capture_output=True)
    assert none.returncode == 1
