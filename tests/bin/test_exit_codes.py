"""command_main: one line and exit 1 for bad input, 2 for bad usage, the traceback and 3
for a bug, and --debug to see every traceback."""
from __future__ import annotations

import importlib
import linecache
import subprocess
import sys

import pytest

from speechlm.bin import (
    EXIT_BUG,
    EXIT_INPUT,
    EXIT_USAGE,
    INPUT_ERRORS,
    USAGE_ERRORS,
    command_main,
    exit_code,
)
from speechlm.core.catalogue import ModelNotInstalled, UnknownModel
from speechlm.core.errors import InputError, UsageError
from speechlm.core.extras import MissingExtra
from speechlm.data.kaldi_dir import DataDirError


def _add(parser):
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("go").add_argument("--n", type=int, default=0)


def _main(error, argv=("go",)):
    def run(args):
        assert not hasattr(args, "debug")  # commands see only their own options
        if error is not None:
            raise error
        return 0

    return command_main("speechlm t", "test command", _add, run, list(argv))


@pytest.mark.parametrize("error, code, line", [
    (FileNotFoundError("data/x/wav.scp does not exist"), EXIT_INPUT, "wav.scp does not"),
    (DataDirError("data/x", ["text: utt u1 not in wav.scp"]), EXIT_INPUT, "utt u1"),
    (InputError("nbest.jsonl line 3: no 'hyps'"), EXIT_INPUT, "line 3"),
    (UnknownModel("unknown model 'x'; known: a, b"), EXIT_INPUT, "error: unknown model 'x'"),
    (ModelNotInstalled("model 'x' needs the package 'y'"), EXIT_INPUT, "needs the package"),
    (MissingExtra("gradio is not installed: pip install 'speechlm[serve]'"), EXIT_INPUT,
     "speechlm[serve]"),
    (UsageError("--lattice needs --graph"), EXIT_USAGE, "needs --graph"),
])
def test_expected_errors_are_one_line(capsys, error, code, line):
    assert _main(error) == code
    err = capsys.readouterr().err
    assert err.startswith("speechlm t: error: ") and line in err
    assert "Traceback" not in err
    # one line, but a data dir's error lists each of its problems below it
    assert len(err.splitlines()) == 1 + len(getattr(error, "problems", []))


def test_a_missing_extra_module_names_the_extra(capsys):
    error = ModuleNotFoundError("No module named 'fastapi'", name="fastapi")
    assert _main(error) == EXIT_INPUT
    assert "fastapi is not installed: pip install 'speechlm[serve]'" in capsys.readouterr().err


@pytest.mark.parametrize("error", [
    ValueError("too many values to unpack"),  # what used to become one line
    OSError(28, "No space left on device"),
    KeyError("utt"),
    TypeError("unsupported operand"),
    ModuleNotFoundError("No module named 'numpyy'", name="numpyy"),
])
def test_anything_else_shows_its_traceback(capsys, error):
    assert _main(error) == EXIT_BUG
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and type(error).__name__ in err
    assert err.rstrip().splitlines()[-1].startswith("speechlm t: internal error")


def test_argparse_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        _main(None, ["go", "--n", "x"])
    assert e.value.code == EXIT_USAGE


@pytest.mark.parametrize("argv", [["--debug", "go"], ["go", "--debug"], ["go", "--n", "1",
                                                                          "--debug"]])
def test_debug_raises_every_error(argv):
    assert _main(None, argv) == 0  # accepted before or after the sub-action
    with pytest.raises(DataDirError, match="bad dir"):
        _main(DataDirError("bad dir", []), argv)
    with pytest.raises(ValueError, match="a bug"):
        _main(ValueError("a bug"), argv)


def test_interrupt_is_one_line(capsys):
    assert _main(KeyboardInterrupt()) == 130
    assert capsys.readouterr().err == "speechlm t: interrupted\n"


def test_exit_code_does_not_import_the_modules_it_names():
    code = ("import sys; from speechlm.bin import exit_code; "
            "assert exit_code(FileNotFoundError('x')) == 1; "
            "assert 'speechlm.api' not in sys.modules and 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_exit_code_of_classes_by_name():
    from speechlm.api import AudioRejected

    assert exit_code(AudioRejected("silent", "silent audio")) == EXIT_INPUT
    assert exit_code(RuntimeError("x")) == EXIT_BUG


@pytest.mark.parametrize("name", USAGE_ERRORS + INPUT_ERRORS)
def test_every_named_error_class_exists(name):
    # a renamed or moved class would silently turn its errors into "bugs"
    module, _, cls = name.rpartition(".")
    assert issubclass(getattr(importlib.import_module(module), cls), Exception)


def test_a_real_command_with_and_without_debug(tmp_path, capsys):
    from speechlm.bin.cli import main

    argv = ["lm", "train", "--text", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o")]
    assert main(argv) == EXIT_INPUT
    assert "missing.txt does not exist" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        main([*argv, "--debug"])
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        main(["--debug", *argv])
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    assert "--debug" in capsys.readouterr().out


def _fake_speechlm_module():
    # code that runs as a speechlm module, with its source where tracebacks look for it
    src = ("def unpack(x):\n    a, b = x\n    return a\n\n"
           "def reject(x):\n    raise ValueError(\n        f'{x}: not a number')\n\n"
           "def reraise(x):\n    try:\n        unpack(x)\n    except ValueError as e:\n"
           "        raise e\n")
    name = "<speechlm-fake-module>"
    linecache.cache[name] = (len(src), None, src.splitlines(True), name)
    ns = {"__name__": "speechlm.fake"}
    exec(compile(src, name, "exec"), ns)
    return ns


def test_plain_value_error_is_input_only_when_speechlm_raised_it(capsys):
    ns = _fake_speechlm_module()
    assert _main_calling(ns["reject"], "x") == EXIT_INPUT
    assert capsys.readouterr().err == "speechlm t: error: x: not a number\n"
    for bug in (ns["unpack"], ns["reraise"]):
        assert _main_calling(bug, [1, 2, 3]) == EXIT_BUG
        assert "too many values to unpack" in capsys.readouterr().err
    from speechlm.runtime.loading import parse_dtype  # a real one

    assert _main_calling(parse_dtype, "float7") == EXIT_INPUT
    assert "dtype must be one of" in capsys.readouterr().err


def _main_calling(fn, arg):
    return command_main("speechlm t", None, _add, lambda args: fn(arg), ["go"])
