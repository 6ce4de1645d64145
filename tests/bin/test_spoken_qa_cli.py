"""``speechlm spoken-qa`` end to end on a tiny random LM: every input kind, the marginal ones
included, writes its answers and scores; a finished input is kept; settings are per input."""
import json

from speechlm.bin.cli import main
from speechlm.testing.llm import save_tiny_model


def _setup(tmp_path):
    ann = tmp_path / "ann.jsonl"
    rows = [{"slurp_id": 1, "sentence_annotation": "wake me up at [time : five am]"},
            {"slurp_id": 2, "sentence_annotation": "play [genre : jazz] please"},
            {"slurp_id": 3, "sentence_annotation": "remind me at [time : six pm]"}]
    ann.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pool = tmp_path / "pool.jsonl"
    pool.write_text(json.dumps({"id": "s-3", "text": "remind me at six pm"}) + "\n")
    data, dec = tmp_path / "data", tmp_path / "dec"
    data.mkdir()
    dec.mkdir()
    (data / "text").write_text("spk-s-1 wake me up at five am\nspk-s-2 play jazz please\n")
    (data / "wav.scp").write_text("spk-s-1 a.wav\nspk-s-2 b.wav\n")  # never read
    (data / "utt2spk").write_text("spk-s-1 spk\nspk-s-2 spk\n")
    (dec / "text").write_text("spk-s-1 wake me up at nine am\nspk-s-2 play jazz please\n")
    (dec / "nbest.jsonl").write_text(
        json.dumps({"utt": "spk-s-1", "hyps": [{"text": "wake me up at nine am", "score": -1},
                                               {"text": "wake me up at five am", "score": -2}]})
        + "\n")  # spk-s-2 has no N-best: asked about the empty request
    return ann, pool, data, dec


def test_spoken_qa_cli_with_marginal_inputs(tmp_path, capsys):
    ann, pool, data, dec = _setup(tmp_path)
    lm = save_tiny_model(tmp_path / "lm")
    out = tmp_path / "qa"
    args = ["spoken-qa", "--annotations", f"s-={ann}", "--pool-jsonl", str(pool),
            "--data-dir", str(data), "--decode-dir", str(dec), "--llm", str(lm),
            "--max-tokens", "3", "--out", str(out), "--no-progress",
            "--input", "1best", "nbest_marg"]
    assert main(args) == 0
    scores = json.loads((out / "scores.json").read_text())
    assert scores["nbest_marg"]["questions"] == scores["1best"]["questions"] == 2
    assert scores["nbest_marg"]["settings"]["marginal_k"] == 4
    assert "marginal_k" not in scores["1best"]["settings"]
    assert scores["nbest_marg"]["counts"]["empty_context"] == 1
    assert len((out / "nbest_marg.jsonl").read_text().splitlines()) == 2
    capsys.readouterr()
    assert main(args) == 0  # the same settings: both kept
    assert capsys.readouterr().out.count(": kept") == 2
    assert main([*args[:-2], "nbest_marg", "--marginal-k", "1"]) == 0  # new settings: redone
    assert "kept" not in capsys.readouterr().out
