import importlib
import subprocess
import sys

import pytest

from speechlm.bin.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_unknown_command_is_an_error(capsys):
    assert main(["no-such-command"]) == 2
    assert "unknown command" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_module_has_the_entry_points(name):
    module = importlib.import_module(COMMANDS[name][0])
    assert module.__doc__ and callable(module.add_arguments) and callable(module.run)


def test_console_script_help_runs():
    out = subprocess.run([sys.executable, "-m", "speechlm.bin.cli", "score", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--ref" in out and "--hyp" in out


def test_score_prints_table(tmp_path, capsys):
    (tmp_path / "ref").write_text("u1 one two\nu2 three\n")
    (tmp_path / "hyp").write_text("u1 one too\nu2 three\n")
    assert main(["score", "--ref", str(tmp_path / "ref"), "--hyp", str(tmp_path / "hyp"),
                 "--name", "t", "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "|t|2|3|66.7|33.3|0.0|0.0|33.3|50.0|" in out
    assert "%WER 33.33 [ 1 / 3, 0 ins, 0 del, 1 sub ]" in out
    assert "u1 errors=1" in (tmp_path / "s" / "errs").read_text()
