"""egs/slurp/icl1/local/prompt_sweep_results.py (run.sh --prompt_sweep): accuracy per prompt
variant beside the main run, the mean over tables, and paired wins and losses."""
import json
import subprocess
import sys
from pathlib import Path

from icl_results_testdata import write_pred as _pred
from icl_results_testdata import write_refs

SCRIPT = (Path(__file__).parents[2] / "egs" / "slurp" / "icl1" / "local"
          / "prompt_sweep_results.py")


def _run(exp: Path, data: Path, *models: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--exp", str(exp), "--data", str(data),
                           "--models", *models, "--sets", "test", "--voices", "piper",
                           "--inputs", "1best", "wcn", "oracle", "--variants", "no_instruction",
                           "calibrate"], capture_output=True, text=True)


def test_variants_beside_the_main_prompt_with_gap_and_paired_counts(tmp_path):
    exp, data = tmp_path / "exp", tmp_path / "data"
    write_refs(data, ["test_piper"])
    runs = {"main": (4, 5, 8), "no_instruction": (4, 8, 8), "calibrate": (2, 2, 6)}
    for m in ("a", "b"):
        for variant, rights in runs.items():
            base = (exp / m / "icl_embedding" / "test_piper" if variant == "main"
                    else exp / m / "icl_prompt" / "embedding" / variant / "test_piper")
            for kind, right in zip(("1best", "wcn", "oracle"), rights, strict=True):
                _pred(base / kind, right)
        (exp / m / "icl_prompt" / "embedding" / "command.txt").write_text(f"./run.sh {m}\n")
    (exp / "slu_icl").mkdir()
    (exp / "slu_icl" / "slu.json").write_text(json.dumps({"prompt": {
        "instruction": "Intent of each request.", "verbalize": True, "calibrate": False}}))
    res = _run(exp, data, "b")  # "a" is found on disk as well
    assert res.returncode == 0, res.stderr
    md = (exp / "RESULTS_prompt.md").read_text()
    assert md.index("## b, test, piper") < md.index("## a, test, piper")
    assert "a's ablation: `./run.sh a`" in md
    assert ('instruction: "Intent of each request."; labels as words; contextual '
            'calibration off') in md
    assert "| prompt | 1best | wcn | oracle | gap closed (wcn) |" in md
    assert "| main | 40.0 | 50.0 | 80.0 | 25% |" in md
    assert "| no_instruction | 40.0 | 80.0 | 80.0 | 100% |" in md
    assert "| calibrate | 20.0 | 20.0 | 60.0 | 0% |" in md
    assert "| main | 2 | 40.0 | 50.0 | 80.0 | 25% |" in md  # the mean over both tables
    # wcn: utterances 5-7 right only without the instruction, in each of the two tables
    assert "- `no_instruction`, wcn: +6/-0 (p=0.03)" in md
    assert "- `calibrate`, 1best: +0/-4 (p=0.12)" in md
    assert (exp / "RESULTS_prompt.png").is_file()


def test_no_ablation_is_an_error(tmp_path):
    res = _run(tmp_path / "exp", tmp_path / "data", "a")
    assert res.returncode == 1 and "no prompt ablation results found" in res.stderr
