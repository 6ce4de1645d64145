"""egs/slurp/icl1/local/make_results.py (stage 7) with two first passes (Whisper and
PocketSphinx): one WER / calibration row and one accuracy row per first pass, gap closed,
and the dev NCE line of each first pass, from a small made-up exp dir."""
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "egs" / "slurp" / "icl1" / "local" / "make_results.py"


def _system(exp, m, wer, acc, nces, best):
    dec = exp / m / "decode_test_piper"
    dec.mkdir(parents=True)
    dec.joinpath("oracle_wer").write_text(
        f"%WER {wer[0]:.2f} [ 1 / 10, 10 utts ] 1-best\n"
        f"%WER {wer[1]:.2f} [ 1 / 10, 10 utts ] N-best oracle\n")
    cal = exp / m / "decode_test_piper_cal"
    cal.mkdir(parents=True)
    score = {"nce": -0.5, "ece": 0.2, "mbr_wer": wer[0]}
    cal.joinpath("calibration.json").write_text(json.dumps(
        {"am_scale": best, "raw": score, "calibrated": {**score, "nce": -0.4}}))
    scales = [{"am_scale": s, "nce": n, "ece": 0.3, "mbr_wer": 50.0, "words": 9}
              for s, n in nces.items()]
    (exp / m / "calibration.json").write_text(
        json.dumps({"am_scale": best, "utts": 28, "scales": scales}))
    for kind, a in acc.items():
        d = exp / m / "icl_embedding" / "test_piper" / kind
        d.mkdir(parents=True)
        d.joinpath("accuracy.json").write_text(json.dumps({"accuracy": a, "total": 10}))


def test_two_first_passes(tmp_path):
    exp = tmp_path / "exp"
    _system(exp, "whisper-tiny.en", (10.0, 8.0),
            {"text": 0.9, "1best": 0.8, "wcn": 0.8, "oracle": 0.81}, {0.1: -5.0, 0.5: -5.2}, 0.1)
    _system(exp, "pocketsphinx", (40.0, 30.0),
            {"1best": 0.5, "wcn": 0.6, "wcn_cal": 0.45, "wcn_marg": 0.65, "oracle": 0.7},
            {0.05: -2.2, 0.1: 0.1, 0.2: -2.9}, 0.1)
    (tmp_path / "data" / "local").mkdir(parents=True)
    (tmp_path / "data" / "local" / "sets.json").write_text(json.dumps(
        {"sets": {"test": 10}, "test_intents_not_in_pool": ["BookRestaurant"]}))
    cmd = [sys.executable, str(SCRIPT), "--exp", str(exp), "--data", str(tmp_path / "data"),
           "--models", "whisper-tiny.en", "pocketsphinx", "--sets", "test", "--voices",
           "piper", "--selections", "embedding", "--llm", "smollm2-135m-instruct",
           "--shots", "8", "--corpus", "snips"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    md = (exp / "RESULTS.md").read_text()
    acc = [r for r in md.splitlines() if r.startswith("|embedding|")]
    # the text column is read once, from the first first pass, for every row
    # text 1best nbest nbest_marg wcn wcn_cal wcn_marg oracle, gap closed WCN / cal / marg
    assert acc[0] == "|embedding|whisper-tiny.en|test|piper|10|90.0|80.0|-|-|80.0|-|-|81.0|-|-|-|"
    assert acc[1] == ("|embedding|pocketsphinx|test|piper|10|90.0|50.0|-|-|60.0|45.0|65.0|70.0|"
                      "50%|-25%|75%|")
    # the mean over first passes: wcn_cal, wcn_marg and nbest are missing from one, so left
    # out; then the differences to the 1-best and the gaps closed
    assert ("|embedding|test|2|90.0|65.0|-|-|70.0|-|-|75.5|-|-|+5.0|-|-|48%|-|-|") in md
    wer = [r for r in md.splitlines() if r.startswith("|pocketsphinx|test|piper|")]
    assert wer == ["|pocketsphinx|test|piper|40.0|nan|nan|30.0|nan|0.1|-0.50 → -0.40|"
                   "0.200 → 0.200|"]
    assert ("- whisper-tiny.en: scales 0.1-0.5 on 28 dev utterances, best NCE -5.00 at 0.1 "
            "(WCN MBR WER 50.0%); NCE range -5.20 to -5.00: negative at every scale") in md
    assert "- pocketsphinx: scales 0.05-0.2 on 28 dev utterances, best NCE 0.10 at 0.1" in md
    assert ("gap closed pocketsphinx test piper (embedding): WCN 50%, WCN cal -25%, "
            "WCN marg 75%") in out
    assert ("- intents of a test set that the few-shot pool does not have (never right; "
            'their utterances are counted): `{"test": ["BookRestaurant"]}`') in md
    assert (exp / "RESULTS.png").stat().st_size > 1000


def test_qa_table_has_the_marginal_columns_and_their_gap(tmp_path):
    exp = tmp_path / "exp"
    qa = exp / "espnet" / "qa" / "test_piper"
    qa.mkdir(parents=True)
    f1 = {"text": 64.0, "1best": 30.0, "wcn": 33.0, "wcn_marg": 36.0, "oracle": 40.0}
    qa.joinpath("scores.json").write_text(json.dumps(
        {k: {"exact_match": v - 5, "f1": v, "questions": 100} for k, v in f1.items()}))
    cmd = [sys.executable, str(SCRIPT), "--exp", str(exp), "--data", str(tmp_path / "data"),
           "--models", "espnet", "--sets", "test", "--voices", "piper", "--selections",
           "embedding", "--llm", "smollm2-135m-instruct", "--shots", "4", "--qa_only"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    md = (exp / "RESULTS_qa.md").read_text()
    # text 1best nbest nbest_marg wcn wcn_marg oracle; gap closed WCN 30%, WCN marg 60%
    assert ("|espnet|test|piper|-|100|59.0 / 64.0|25.0 / 30.0|-|-|28.0 / 33.0|31.0 / 36.0|"
            "35.0 / 40.0|30%|60%|") in md
