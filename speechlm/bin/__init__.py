"""Entry points: ``python -m speechlm.bin.<name>`` or ``speechlm <name>``.

Each module defines ``add_arguments(parser)``, ``run(args) -> int`` and ``main(argv=None)``;
its docstring's first line is the help shown by ``speechlm --help``.

Exit codes, the same for every command:

- 0: success.
- 1: bad input data, reported as one line ``speechlm <command>: error: ...``: a missing or
  unreadable file, a malformed data dir or model dir (``DataDirError``,
  ``ModelDirError``), rejected audio (``AudioRejected``, ``AudioError``), a catalogue
  model that is unknown or not installed, an unreachable LLM server (``RemoteError``), a
  missing optional dependency (the line names ``pip install 'speechlm[extra]'``), or any
  ``speechlm.core.errors.InputError``. For now also a plain ``ValueError`` that
  speechlm's own code raises with a message (``raise ValueError(f"...")``), until
  every module raises ``InputError``/``UsageError``; a ValueError from Python or a
  library (a bad unpacking, ``int("x")``) is a bug (exit 3).
- 2: bad usage: an unknown option or a bad value (argparse), or any
  ``speechlm.core.errors.UsageError`` (a bad option combination or config file).
- 3: an unexpected error, i.e. a bug: the full traceback is printed, then one line.
- 130: interrupted (Ctrl-C).

``--debug`` (accepted anywhere on the command line of every command) lets every error
propagate with its full traceback instead, including those of exit codes 1 and 2.
"""
from __future__ import annotations

import argparse
import linecache
import logging
import re
import sys
import traceback
from collections.abc import Callable

from speechlm.core.extras import MissingExtra, hint

EXIT_INPUT, EXIT_USAGE, EXIT_BUG, EXIT_INTERRUPTED = 1, 2, 3, 130

# Error classes the user can fix, by where they are defined. They are looked up in
# sys.modules when an error arrives, so the CLI imports none of these (heavy) modules for
# --help; a class whose module was never imported cannot have been raised.
USAGE_ERRORS = ("speechlm.core.errors.UsageError",)
INPUT_ERRORS = (
    "speechlm.core.errors.InputError",
    "speechlm.core.extras.MissingExtra",
    "speechlm.core.catalogue.UnknownModel",
    "speechlm.core.catalogue.ModelNotInstalled",
    "speechlm.core.catalogue.ModelFileError",
    "speechlm.data.kaldi_dir.DataDirError",
    "speechlm.data.audio.AudioError",
    "speechlm.data.tts.SynthesisError",
    "speechlm.asr.model_dir.ModelDirError",
    "speechlm.api.AudioRejected",
    "speechlm.runtime.remote.RemoteError",
)
# OSErrors that mean "this path is not what you said"; other OSErrors (a full disk, a
# broken pipe) keep their traceback.
PATH_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
               PermissionError)


def _is_one_of(error: BaseException, names: tuple[str, ...]) -> bool:
    for name in names:
        module, _, cls = name.rpartition(".")
        loaded = sys.modules.get(module)
        if loaded is not None and isinstance(error, getattr(loaded, cls, ())):
            return True
    return False


_RAISE_NEW = re.compile(r"raise\s+[A-Za-z_][\w.]*\(")


def _raised_as_message(error: BaseException) -> bool:
    """Whether speechlm's own code raised ``error`` with a ``raise SomeError(...)`` line.

    Transitional, for plain ``ValueError`` s: many modules still reject bad input with
    ``raise ValueError(f"...")`` (a message written for the user) instead of
    ``InputError``/``UsageError``. A ValueError that Python or a library raised (a bad
    unpacking, ``int("x")``, numpy's shape checks) or that code re-raises is a bug.
    """
    tb = error.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "")
    if module != "speechlm" and not module.startswith("speechlm."):
        return False
    line = linecache.getline(tb.tb_frame.f_code.co_filename, tb.tb_lineno).strip()
    return bool(_RAISE_NEW.match(line))


def exit_code(error: BaseException) -> int:
    """The exit code of an error escaping a command (see the module docstring)."""
    if _is_one_of(error, USAGE_ERRORS):
        return EXIT_USAGE
    if _is_one_of(error, INPUT_ERRORS) or isinstance(error, PATH_ERRORS):
        return EXIT_INPUT
    if isinstance(error, ModuleNotFoundError) and hint(error.name or "") is not None:
        return EXIT_INPUT
    if type(error) is ValueError and _raised_as_message(error):
        return EXIT_INPUT
    return EXIT_BUG


def _message(error: BaseException) -> str:
    if isinstance(error, ModuleNotFoundError) and not isinstance(error, MissingExtra):
        extra = hint(error.name or "")
        if extra:
            return f"{error.name} is not installed: {extra}"
    if isinstance(error, KeyError) and error.args:  # str(KeyError) quotes its message
        return str(error.args[0])
    return str(error) or type(error).__name__


def _split_debug(argv: list[str]) -> tuple[list[str], bool]:
    # Taken out before parsing, so --debug works before or after a sub-action
    # (``speechlm lm train ... --debug``); "--" ends the options as usual.
    end = argv.index("--") if "--" in argv else len(argv)
    rest = [a for a in argv[:end] if a != "--debug"] + argv[end:]
    return rest, len(rest) != len(argv)


def command_main(prog: str, doc: str | None, add_arguments: Callable, run: Callable,
                 argv: list[str] | None = None) -> int:
    """Parse ``argv`` for one command and run it; return its exit code (module docstring)."""
    # Our own progress at INFO; libraries (ESPnet's beam search logs every utterance at
    # INFO) only from WARNING up.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("speechlm").setLevel(logging.INFO)
    parser = argparse.ArgumentParser(prog=prog, description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of any error (exit codes: see "
                             "'python -m pydoc speechlm.bin')")
    add_arguments(parser)
    argv, debug = _split_debug(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    del args.debug  # commands see only their own options
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:
        if debug:
            raise
        code = exit_code(e)
        if code == EXIT_BUG:
            traceback.print_exc()
            print(f"{prog}: internal error ({type(e).__name__}): this is a bug; please report "
                  "it with the traceback above", file=sys.stderr)
        else:
            print(f"{prog}: error: {_message(e)}", file=sys.stderr)
        return code
