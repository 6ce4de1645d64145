"""egs/slurp/slu1 stage 5 with --rescore_method (the second-pass methods) on decode dirs
written here: the tuned hypotheses land where stage 7 reads them, and their WER is right.

Slow (a few CLI runs that load torch): the full recipe's quick path is
``test_slurp_recipe.py`` (default stage 5, the sweep)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "egs" / "slurp" / "slu1"
REFS = {"dev": {"dev1-a": "wake me up at seven", "dev1-b": "play some jazz music",
                "dev2-c": "what is the weather today"},
        "test": {"test1-a": "set an alarm for six", "test2-b": "turn off the lights"}}
# first-pass N-bests (text, natural-log score), best first
NBEST = {"dev1-a": [("wake me up at seven", -3.0), ("wake me up at heaven", -3.2)],
         "dev1-b": [("play sum jazz music", -4.0), ("play some jazz music", -4.1)],
         "dev2-c": [("what is the weather today", -2.0), ("what is a weather today", -2.5)],
         "test1-a": [("set an alarm for sex", -3.0), ("set an alarm for six", -3.1)],
         "test2-b": [("turn off the lights", -1.0), ("turn of the lights", -1.4)]}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    from speechlm.testing.llm import save_tiny_model

    root = tmp_path_factory.mktemp("slurp5")
    work = root / "slu1"
    shutil.copytree(RECIPE, work, symlinks=True, ignore=shutil.ignore_patterns(
        "data", "dump", "exp", "RESULTS.md", "*.png"))
    (work / "utils").unlink()
    (work / "utils").symlink_to(REPO / "tools" / "kaldi_utils")
    for s, refs in REFS.items():
        (work / "data" / s).mkdir(parents=True)
        (work / "data" / s / "text").write_text("".join(f"{u} {t}\n" for u, t in refs.items()))
        dec = work / "exp" / "pocketsphinx" / f"decode_{s}"
        dec.mkdir(parents=True)
        with open(dec / "nbest.jsonl", "w") as f:
            for u in refs:
                f.write(json.dumps({"utt": u, "hyps": [{"text": t, "score": sc}
                                                       for t, sc in NBEST[u]]}) + "\n")
    save_tiny_model(root / "llm")
    (root / "slurp").mkdir()
    return work


def run5(work: Path, *opts: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               PYTHONPATH=str(REPO), SPEECHLM_DATA=str(work.parent))
    return subprocess.run(["bash", "run.sh", "--stage", "5", "--stop_stage", "5",
                           "--use_espnet", "false", "--slurp", str(work.parent / "slurp"),
                           *opts], cwd=work, env=env, capture_output=True, text=True,
                          timeout=600)


def _wer(refs: dict[str, str], hyp_file: Path) -> float:
    from speechlm.llm.second_pass.evaluate import errors

    hyps = dict((ln.split(" ", 1) + [""])[:2] for ln in hyp_file.read_text().splitlines())
    err = sum(errors(r, hyps[u]) for u, r in refs.items())
    return 100.0 * err / sum(len(r.split()) for r in refs.values())


def test_a_second_pass_method_is_tuned_on_dev_and_reported_where_stage_7_reads(work):
    r = run5(work, "--rescore_method", "lm_norm", "--llm", str(work.parent / "llm"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((work / "exp/pocketsphinx/rescore_lm_norm/result.json").read_text())
    assert set(res["sets"]) == {"decode_dev", "decode_test"}
    assert res["sets"]["decode_dev"]["role"] == "dev"
    for s, refs in REFS.items():
        d = work / "exp" / "pocketsphinx" / f"decode_{s}" / "rescore_llm"
        best = json.loads((d / "best.json").read_text())
        assert best["setting"] == f"lm_norm_llm_scale_{res['llm_scale']:g}"
        assert best["wer"] == pytest.approx(_wer(refs, d / "text"), abs=0.01)
        # the first pass joins the interpolation: llm_scale 0 is the 1-best
        assert best["first_pass_wer"] == pytest.approx(
            _wer(refs, _one_best_file(work, s, refs)), abs=0.01)
    # dev is never worse than the first pass, by construction of the tuning
    assert res["sets"]["decode_dev"]["wer"] <= res["sets"]["decode_dev"]["one_best"]


def _one_best_file(work: Path, s: str, refs: dict[str, str]) -> Path:
    p = work / f"onebest_{s}.txt"
    p.write_text("".join(f"{u} {NBEST[u][0][0]}\n" for u in refs))
    return p


def test_trained_methods_need_a_scorer_dir(work):
    r = run5(work, "--rescore_method", "pll")
    assert r.returncode != 0 and "needs --rescore_model DIR" in r.stderr
