import json

import pytest

from speechlm.bin.cli import COMMANDS, main

TINY = ["--vocab-size", "300", "--layers", "1", "--hidden", "32", "--heads", "2",
        "--context-length", "32", "--epochs", "3", "--lr", "0.01", "--warmup-steps", "5",
        "--batch-size", "16", "--threads", "1", "--no-progress"]


@pytest.fixture
def text(tmp_path):
    path = tmp_path / "text.txt"
    words = ["turn on the lights", "turn off the lights", "play some music",
             "wake me up at seven", "what is the weather today", "set an alarm"]
    path.write_text("\n".join(words[i % len(words)] + f" {i % 7}" for i in range(300)) + "\n")
    return path


def test_lm_is_a_registered_command():
    assert COMMANDS["lm"][0] == "speechlm.bin.lm"


def test_train_writes_checkpoint_and_report(text, tmp_path, capsys):
    out = tmp_path / "lm"
    assert main(["lm", "train", "--text", str(text), "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "held-out perplexity" in printed and "unigram" in printed
    report = json.loads((out / "train_report.json").read_text())
    assert report["config"]["num_layers"] == 1 and report["config"]["epochs"] == 3
    assert report["heldout_perplexity"] < report["unigram_perplexity"]
    # a finished dir is refused without --overwrite, accepted with it
    assert main(["lm", "train", "--text", str(text), "--out", str(out), *TINY]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(["lm", "train", "--text", str(text), "--out", str(out), *TINY,
                 "--overwrite", "--epochs", "1"]) == 0


def test_bad_input_is_one_clear_line(text, tmp_path, capsys):
    assert main(["lm", "train", "--text", str(tmp_path / "missing.txt"),
                 "--out", str(tmp_path / "o"), *TINY]) == 1
    assert "missing.txt does not exist" in capsys.readouterr().err
    (tmp_path / "empty.txt").write_text("")
    assert main(["lm", "train", "--text", str(tmp_path / "empty.txt"),
                 "--out", str(tmp_path / "o"), *TINY]) == 1
    assert "no non-empty lines" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    assert main(["lm", "train", "--text", str(text), "--out", str(tmp_path / "taken"),
                 *TINY]) == 1
    assert "not empty" in capsys.readouterr().err
    assert main(["lm", "train", "--text", str(text), "--out", str(tmp_path / "o"),
                 *TINY, "--heads", "3"]) == 2  # a bad option value: usage
    assert "divisible by num_heads" in capsys.readouterr().err
