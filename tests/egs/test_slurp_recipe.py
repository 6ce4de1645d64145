"""egs/slurp/slu1 --quick end to end (integration, slow: about 10-15 min on 2 cores).

Needs the shared SLURP text (../shared/data/slurp); skipped without it. Checks that every
stage writes its outputs and that the results hold together: lattice oracle <= N-best
oracle <= 1-best WER per utterance, WCN bins sum to 1, one intent per utterance for every
input, and RESULTS.md with its tables and plot.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from speechlm.testing.shared_data import shared_data_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "egs" / "slurp" / "slu1"
SLURP = shared_data_dir("slurp")
SNIPS = shared_data_dir("snips")


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    if SLURP is None:
        pytest.skip("shared SLURP text not found")
    work = tmp_path_factory.mktemp("slurp") / "slu1"
    shutil.copytree(RECIPE, work, symlinks=True,
                    ignore=shutil.ignore_patterns("data", "dump", "exp", "RESULTS.md", "*.png"))
    (work / "utils").unlink()
    (work / "utils").symlink_to(REPO / "tools" / "kaldi_utils")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    args = ["bash", "run.sh", "--quick", "true", "--slurp", str(SLURP)]
    if SNIPS is not None:
        args += ["--snips", str(SNIPS)]
    r = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return work


def test_first_passes_and_oracles(recipe):
    for system in ("exp/pocketsphinx", "exp/asr_train_asr_quick"):
        for s in ("dev", "test"):
            d = recipe / system / f"decode_{s}"
            rows = [json.loads(line) for line in (d / "oracle.jsonl").read_text().splitlines()]
            assert len(rows) == len((recipe / "data" / s / "text").read_text().splitlines())
            assert all(r["lattice"] <= r["nbest"] <= r["1best"] for r in rows)
            for line in (d / "cn.jsonl").read_text().splitlines():
                for b in json.loads(line)["bins"]:
                    assert abs(sum(e["posterior"] for e in b) - 1) < 1e-4
            assert (d / "rescore_llm" / "best.json").is_file()


def test_intents_and_results(recipe):
    gold = (recipe / "data" / "test" / "utt2intent").read_text().splitlines()
    for inp in ("text", "onebest", "nbest", "wcn", "oracle"):
        pred = recipe / "exp" / "slu_slurp_icl" / f"predict_pocketsphinx_test_{inp}"
        lines = (pred / "utt2intent").read_text().splitlines()
        assert [x.split()[0] for x in lines] == [x.split()[0] for x in gold]
    results = (recipe / "RESULTS.md").read_text()
    assert "synthetic" in results and "lattice oracle" in results
    assert "Intent accuracy" in results and (recipe / "accuracy_vs_wer.png").is_file()
