"""egs/slurp/icl1/local/knn_results.py: the kNN vote beside the ICL run, the mean over tables,
paired wins and losses against ICL, and each method's own spread against its 1-best."""
import subprocess
import sys
from pathlib import Path

from icl_results_testdata import write_pred as _pred
from icl_results_testdata import write_refs

SCRIPT = Path(__file__).parents[2] / "egs" / "slurp" / "icl1" / "local" / "knn_results.py"


def _run(exp: Path, data: Path, *opts: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--exp", str(exp), "--data", str(data),
                           "--models", "a", "b", "--sets", "test", "--voices", "piper", "espeak",
                           "--inputs", "1best", "wcn_marg", "oracle", "--knn", "8",
                           "--cmdline", "./run.sh --knn 8", *opts],
                          capture_output=True, text=True)


def _knn_runs(exp: Path, n: int, sets: list[str], rights: tuple[int, int, int]) -> None:
    for s in sets:
        for voice in ("piper", "espeak"):
            for kind, right in zip(("1best", "wcn_marg", "oracle"), rights, strict=True):
                _pred(exp / "a" / "knn" / f"neighbors_{n}" / f"{s}_{voice}" / kind, right)


def test_knn_beside_icl_with_gap_paired_counts_and_spread(tmp_path):
    exp, data = tmp_path / "exp", tmp_path / "data"
    write_refs(data, ["test_piper", "test_espeak"])
    runs = {"icl": (4, 5, 8), "knn": (5, 7, 8)}
    for voice in ("piper", "espeak"):
        for run, rights in runs.items():
            base = (exp / "a" / "icl_embedding" / f"test_{voice}" if run == "icl"
                    else exp / "a" / "knn" / "neighbors_8" / f"test_{voice}")
            for kind, right in zip(("1best", "wcn_marg", "oracle"), rights, strict=True):
                _pred(base / kind, right)
    # first pass b has a kNN run but no ICL run: no table, not in the spread either
    for kind in ("1best", "wcn_marg", "oracle"):
        _pred(exp / "b" / "knn" / "neighbors_8" / "test_piper" / kind, 1)
    res = _run(exp, data)
    assert res.returncode == 0, res.stderr
    md = (exp / "RESULTS_knn.md").read_text()
    assert "the 8 few-shot pool sentences" in md and "`./run.sh --knn 8`" in md
    assert "| method | 1best | wcn_marg | oracle | gap closed (wcn_marg) |" in md
    assert "| ICL | 40.0 | 50.0 | 80.0 | 25% |" in md
    assert "| kNN | 50.0 | 70.0 | 80.0 | 67% |" in md
    assert "| kNN | 2 | 50.0 | 70.0 | 80.0 | 67% |" in md  # mean over both voices
    assert "## b," not in md
    # wcn_marg: utterances 5-6 right only with kNN, in each of the two tables
    assert "- `kNN`, wcn_marg: +4/-0 (p=0.12)" in md
    # each run against its own 1-best, over the two tables of a only
    spread = {line.split(" - 1best")[0]: line for line in md.splitlines()
              if " - 1best:" in line}
    assert spread["- kNN, test, `wcn_marg`"].endswith("pooled McNemar +4/-0 (p=0.12)")
    assert spread["- ICL, test, `wcn_marg`"].endswith("pooled McNemar +2/-0 (p=0.50)")
    assert (exp / "RESULTS_knn.png").is_file()


def test_neighbours_chosen_on_dev_join_the_tables(tmp_path):
    exp, data = tmp_path / "exp", tmp_path / "data"
    write_refs(data, ["test_piper", "test_espeak"])
    for voice in ("piper", "espeak"):
        for kind, right in zip(("1best", "wcn_marg", "oracle"), (4, 5, 8), strict=True):
            _pred(exp / "a" / "icl_embedding" / f"test_{voice}" / kind, right)
    # dev: 16 neighbours best on 1best + wcn_marg; 4 best on the oracle, which picks nothing
    _knn_runs(exp, 8, ["dev", "test"], (5, 7, 8))
    _knn_runs(exp, 16, ["dev"], (6, 7, 8))
    _knn_runs(exp, 16, ["test"], (6, 9, 9))
    _knn_runs(exp, 4, ["dev", "test"], (5, 6, 10))
    res = _run(exp, data, "--choices", "4", "16")
    assert res.returncode == 0, res.stderr
    md = (exp / "RESULTS_knn.md").read_text()
    assert "| 4 | 8 | 16 | chosen |\n|---|---|---|---|\n| 55.0 | 60.0 | 65.0 | 16 |" in md
    assert "| kNN, 16 (dev) | 60.0 | 90.0 | 90.0 | 100% |" in md
    assert "- `kNN, 16 (dev)`, wcn_marg: +8/-0 (p=0.008)" in md
    assert "- kNN, 16 (dev), test, `wcn_marg` - 1best:" in md
    # a tie on dev keeps the main count: no extra method
    _knn_runs(exp, 2, ["dev", "test"], (5, 7, 1))
    res = _run(exp, data, "--choices", "2")
    assert res.returncode == 0, res.stderr
    md = (exp / "RESULTS_knn.md").read_text()
    assert "| 2 | 8 | chosen |\n|---|---|---|\n| 60.0 | 60.0 | 8 |" in md
    assert "(dev)" not in md


def test_no_knn_run_beside_icl_is_an_error(tmp_path):
    res = _run(tmp_path / "exp", tmp_path / "data")
    assert res.returncode == 1 and "no kNN run beside an ICL run found" in res.stderr
