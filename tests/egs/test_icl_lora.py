"""egs/slurp/icl1/local/lora_slu.sh's helpers: the per-intent draw of the training sentences
(pick_per_intent.py) and the LoRA-vs-ICL table (lora_results.py) from a made-up exp dir."""
import json
import subprocess
import sys
from pathlib import Path

LOCAL = Path(__file__).parents[2] / "egs" / "slurp" / "icl1" / "local"


def _pool(path, counts):
    rows = [{"id": f"{i}-{n}", "text": f"words of {i} {n}", "intent": i}
            for i, k in counts.items() for n in range(k)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def test_pick_per_intent_seeded_and_capped(tmp_path):
    _pool(tmp_path / "pool.jsonl", {"A": 10, "B": 2, "C": 5})
    cmd = [sys.executable, str(LOCAL / "pick_per_intent.py"), "--jsonl",
           str(tmp_path / "pool.jsonl"), "--per_intent", "3", "--out"]
    res = subprocess.run([*cmd, str(tmp_path / "a")], check=True, capture_output=True, text=True)
    assert "8 sentences, 3 intents; fewer than 3: {'B': 2}" in res.stdout
    rows = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert sorted(r["intent"] for r in rows) == ["A"] * 3 + ["B"] * 2 + ["C"] * 3
    text = (tmp_path / "a.text").read_text().splitlines()
    assert text == [f"{r['id']} {r['text']}" for r in rows]  # Kaldi text, same order
    subprocess.run([*cmd, str(tmp_path / "b")], check=True, capture_output=True)
    assert (tmp_path / "b.jsonl").read_text() == (tmp_path / "a.jsonl").read_text()
    # another intent in the pool does not change the others' draw
    _pool(tmp_path / "pool.jsonl", {"A": 10, "B": 2, "C": 5, "D": 4})
    subprocess.run([*cmd, str(tmp_path / "c")], check=True, capture_output=True)
    c = [json.loads(x) for x in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert [r for r in c if r["intent"] != "D"] == rows


def test_pick_per_intent_names_bad_row(tmp_path):
    (tmp_path / "pool.jsonl").write_text('{"id": "a", "text": "x", "intent": "A"}\n'
                                         '{"id": "b", "text": ""}\n')
    res = subprocess.run([sys.executable, str(LOCAL / "pick_per_intent.py"), "--jsonl",
                          str(tmp_path / "pool.jsonl"), "--per_intent", "1", "--out",
                          str(tmp_path / "o")], capture_output=True, text=True)
    assert res.returncode == 1 and "pool.jsonl:2: no text, intent" in res.stderr


def _acc(exp, sub, s, v, accs):
    for kind, a in accs.items():
        d = exp / "whisper-tiny.en" / sub / f"{s}_{v}" / kind
        d.mkdir(parents=True)
        d.joinpath("accuracy.json").write_text(json.dumps({"accuracy": a, "total": 10}))


def test_lora_results_table(tmp_path):
    exp, slu = tmp_path / "exp", tmp_path / "slu"
    slu.mkdir()
    (slu / "train_report.json").write_text(json.dumps(
        {"train": {"examples": 60, "steps": 4, "train_seconds": 9.5, "final_loss": 0.25}}))
    d = exp / "whisper-tiny.en" / "decode_test_piper"
    d.mkdir(parents=True)
    d.joinpath("oracle_wer").write_text("%WER 25.00 [ 5 / 20, 10 utts ] 1-best\n")
    _acc(exp, "icl_embedding", "test", "piper", {"text": 0.9, "1best": 0.6, "wcn": 0.6,
                                                  "oracle": 0.7})
    _acc(exp, "lora_x", "test", "piper", {"text": 0.95, "1best": 0.7, "wcn": 0.8,
                                           "oracle": 0.9})
    _acc(exp, "icl_embedding", "test", "espeak", {"1best": 0.3, "wcn": 0.2, "oracle": 0.31})
    cmd = [sys.executable, str(LOCAL / "lora_results.py"), "--exp", str(exp), "--model",
           "whisper-tiny.en", "--sets", "test", "--voices", "piper", "espeak", "--inputs",
           "text", "1best", "wcn", "oracle", "--lora", "lora_x", "--slu_dir", str(slu)]
    subprocess.run(cmd, check=True, capture_output=True)
    md = (exp / "RESULTS_lora_whisper-tiny.en.md").read_text()
    assert "60 examples" in md and "final loss 0.250" in md
    rows = [r for r in md.splitlines() if r.startswith("| piper") or r.startswith("| espeak")]
    assert rows[0] == "| piper (25.0%) | ICL | 90.0 | 60.0 | 60.0 | 70.0 | 0% |"
    assert rows[1] == "| piper (25.0%) | LoRA | 95.0 | 70.0 | 80.0 | 90.0 | 50% |"
    # espeak: text read under the first voice; no LoRA run there; oracle gap < 3 points
    assert rows[2] == "| espeak | ICL | 90.0 | 30.0 | 20.0 | 31.0 | - |"
    assert rows[3] == "| espeak | LoRA | 95.0 | - | - | - | - |"
    assert (exp / "RESULTS_lora_whisper-tiny.en.png").stat().st_size > 1000
    # another first pass: its ICL text accuracy is read where run.sh wrote it (one model)
    (exp / "pocketsphinx" / "icl_embedding" / "test_piper" / "1best").mkdir(parents=True)
    (exp / "pocketsphinx" / "icl_embedding" / "test_piper" / "1best" / "accuracy.json"
     ).write_text(json.dumps({"accuracy": 0.5, "total": 10}))
    ps = [*cmd[:5], "pocketsphinx", *cmd[6:]]
    subprocess.run(ps, check=True, capture_output=True)
    md = (exp / "RESULTS_lora_pocketsphinx.md").read_text()
    assert "| piper | ICL | 90.0 | 50.0 | - | - |" in md
    (slu / "train_report.json").unlink()
    assert subprocess.run(cmd, capture_output=True).returncode == 1
