"""egs/slurp/icl1/local/reach_results.py (run.sh stage 7): of the utterances the LLM gets right
only from the oracle path, how many have a top-K calibrated-WCN path / N-best hypothesis that
reads as well as the oracle path."""
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "egs" / "slurp" / "icl1" / "local" / "reach_results.py"


def _lines(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(rows))


def _exp(tmp_path: Path, oracle_u1: bool = True) -> tuple[Path, Path]:
    exp, data = tmp_path / "exp", tmp_path / "data"
    refs = {"u0": "set an alarm", "u1": "play jazz", "u2": "what time"}
    _lines(data / "test_piper" / "text", (f"{u} {t}\n" for u, t in refs.items()))
    _lines(data / "test_piper" / "utt2intent", (f"{u} a\n" for u in refs))
    pred = exp / "m" / "icl_embedding" / "test_piper"
    # u0, u1: right only from the oracle path (the gap); u2: right only from the 1-best
    for kind, right in {"1best": {"u2"}, "oracle": {"u0", "u1"}, "wcn_marg": {"u0"}}.items():
        _lines(pred / kind / "utt2intent", (f"{u} {'a' if u in right else 'b'}\n" for u in refs))
    oracle = {"u0": "set an alarm", "u2": "what dime"}
    if oracle_u1:
        oracle["u1"] = "play jazz"
    _lines(exp / "m" / "decode_test_piper" / "oracle.jsonl",
           (json.dumps({"utt": u, "oracle_text": t}) + "\n" for u, t in oracle.items()))

    def cn(utt, bins):
        entries = [[{"word": w, "posterior": p, "start": 0.0, "end": 0.0} for w, p in b]
                   for b in bins]
        return json.dumps({"utt": utt, "bins": entries}) + "\n"
    _lines(exp / "m" / "decode_test_piper_cal" / "cn.jsonl", [
        cn("u0", [[("set", 0.9), ("sat", 0.1)], [("an", 1.0)], [("alarm", 0.6), ("arm", 0.4)]]),
        # paths: lay jazz .42, lay chess .28, play jazz .18: the oracle's words come 3rd
        cn("u1", [[("lay", 0.7), ("play", 0.3)], [("jazz", 0.6), ("chess", 0.4)]]),
        cn("u2", [[("what", 1.0)], [("time", 1.0)]])])

    def nb(utt, texts):
        return json.dumps({"utt": utt, "hyps": [{"text": t, "score": -float(j)}
                                                 for j, t in enumerate(texts)]}) + "\n"
    _lines(exp / "m" / "decode_test_piper" / "nbest.jsonl", [
        nb("u0", ["sat an arm", "set an alarm"]), nb("u1", ["lay jazz"]),
        nb("u2", ["what time"])])
    return exp, data


def _cmd(exp: Path, data: Path) -> list[str]:
    return [sys.executable, str(SCRIPT), "--exp", str(exp), "--data", str(data), "--models",
            "m", "other", "--sets", "test", "--voices", "piper", "espeak", "--ks", "4", "1", "2"]


def test_gap_utterances_reached_per_k(tmp_path):
    exp, data = _exp(tmp_path)
    subprocess.run(_cmd(exp, data), check=True, capture_output=True)
    md = (exp / "RESULTS_reach.md").read_text()
    # gap 2 (u0, u1), lost 1 (u2), wcn_marg right 1 (u0); WCN: u0 from K=1, u1 from K=4 (its
    # 3rd path); N-best: u0 from K=2, u1 never (one hypothesis)
    assert "| m | test | piper | 2 | 1 | 1 | 1 | 1 | 2 | 0 | 1 | 1 |" in md
    assert "espeak" not in md.split("|---")[-1] and "other" not in md.split("|---")[-1]
    assert (exp / "RESULTS_reach.png").stat().st_size > 1000


def test_missing_oracle_path_names_the_utterance(tmp_path):
    exp, data = _exp(tmp_path, oracle_u1=False)
    r = subprocess.run(_cmd(exp, data), capture_output=True, text=True)
    assert r.returncode != 0 and "'u1'" in r.stderr and "oracle.jsonl" in r.stderr


def test_nothing_to_read_fails(tmp_path):
    r = subprocess.run(_cmd(tmp_path / "exp", tmp_path / "data"), capture_output=True)
    assert r.returncode == 1
