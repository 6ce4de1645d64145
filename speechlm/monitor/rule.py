"""Anomaly rules: small numpy programs with their provenance and a content hash.

A rule is Python source that defines ``detect(values, timestamps)``: ``values`` is a float64
array of shape (T,) (NaN where the series has a missing value), ``timestamps`` is a float64
array of shape (T,) in seconds since the epoch; it returns a boolean array of shape (T,),
True where the point is anomalous. Only numpy may be imported (``speechlm.monitor.sandbox``
checks and enforces that). One module owns the file format: a rule is stored as one JSON
file ``<name>.rule.json`` holding the source, its SHA-256 and its provenance (prompt
version, model, data chunk, training F1...).

>>> r = Rule.from_source("import numpy as np\\ndef detect(values, timestamps):\\n"
...                      "    return values > 10\\n", provenance={"author": "human"})
>>> r.sha256[:12], r.name
('d6c692d9e224', 'rule-d6c692d9e224')
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from speechlm.core.errors import InputError

__all__ = ["Rule", "RuleFileError", "extract_code", "load_rules", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)(?:```|\Z)", re.S)


class RuleFileError(InputError):
    """A rule file that cannot be read (bad JSON, missing field, hash mismatch)."""


@dataclass(frozen=True)
class Rule:
    """One anomaly rule.

    Args:
        source: Python source defining ``detect(values, timestamps)``.
        provenance: where it came from (``author``, ``prompt``, ``model``, ``series``,
            ``chunk``, ``train_f1``...); free-form JSON values.
        name: a file-safe name; defaults to ``rule-<first 12 hex of the hash>``.
    """

    source: str
    provenance: dict = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source.strip():
            raise ValueError("a rule needs non-empty source")
        if not self.name:
            object.__setattr__(self, "name", f"rule-{self.sha256[:12]}")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            raise ValueError(f"rule name {self.name!r} must be letters, digits, '_', '.', '-'")

    @property
    def sha256(self) -> str:
        """Hash of the source only, so the same program has the same hash whoever wrote it."""
        return hashlib.sha256(self.source.encode()).hexdigest()

    @classmethod
    def from_source(cls, source: str, provenance: dict | None = None, name: str = "") -> Rule:
        return cls(source=source, provenance=dict(provenance or {}), name=name)

    def to_json(self) -> dict:
        return {"format_version": FORMAT_VERSION, "name": self.name, "sha256": self.sha256,
                "provenance": self.provenance, "source": self.source}

    def save(self, directory: str | Path) -> Path:
        """Write ``<directory>/<name>.rule.json`` (via a .tmp file and a rename)."""
        path = Path(directory) / f"{self.name}.rule.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Rule:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise RuleFileError(f"{path}: cannot read rule file: {e}") from e
        for key in ("name", "sha256", "source", "provenance"):
            if key not in data:
                raise RuleFileError(f"{path}: rule file lacks field {key!r}")
        if data.get("format_version") != FORMAT_VERSION:
            raise RuleFileError(f"{path}: format_version {data.get('format_version')!r}, "
                                f"this speechlm reads {FORMAT_VERSION}")
        rule = cls(source=data["source"], provenance=data["provenance"], name=data["name"])
        if rule.sha256 != data["sha256"]:
            raise RuleFileError(f"{path}: source does not match its sha256 (edited by hand?)")
        return rule


def load_rules(directory: str | Path) -> list[Rule]:
    """All ``*.rule.json`` in ``directory``, sorted by name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RuleFileError(f"{directory}: no such rule directory")
    return [Rule.load(p) for p in sorted(directory.glob("*.rule.json"))]


def extract_code(text: str) -> str:
    """The rule source in an LLM answer: the first fenced code block (or the whole text).

    A small model often names the function differently (``detect_outliers``); when no
    ``detect`` is defined but exactly one top-level function takes two or more arguments,
    the source gets ``detect = <that function>`` appended, said in a comment. Nothing else
    is rewritten: code that does not parse is returned as is, for the repair agent.
    """
    m = _FENCE.search(text)
    code = (m.group(1) if m else text).strip("\n") + "\n"
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    if any(f.name == "detect" for f in funcs):
        return code
    two_arg = [f for f in funcs if len(f.args.args) >= 2]
    if len(two_arg) == 1:
        code += f"\n\n# added by speechlm.monitor: the model named its function " \
                f"{two_arg[0].name!r}\ndetect = {two_arg[0].name}\n"
    return code
