"""What a rule may contain: the AST check, shared by the host and the sandbox child.

This module imports only ``ast`` because the child process loads it by file path before
it has dropped privileges (it never imports speechlm).
"""

from __future__ import annotations

import ast

MAX_SOURCE_CHARS = 20_000
ALLOWED_MODULES = ("numpy",)
# Builtins a rule may call (the child gives the rule exactly these, plus a guarded import).
SAFE_BUILTINS = (
    "abs", "all", "any", "bool", "dict", "divmod", "enumerate", "filter", "float", "frozenset",
    "int", "isinstance", "len", "list", "map", "max", "min", "pow", "print", "range",
    "reversed", "round", "set", "slice", "sorted", "str", "sum", "tuple", "zip",
    "ArithmeticError", "Exception", "IndexError", "KeyError", "RuntimeError",
    "TypeError", "ValueError", "ZeroDivisionError", "True", "False", "None",
)
DENIED_NAMES = frozenset({
    "eval", "exec", "compile", "open", "input", "getattr", "setattr", "delattr", "hasattr",
    "globals", "locals", "vars", "dir", "type", "object", "super", "breakpoint", "help",
    "exit", "quit", "memoryview", "classmethod", "staticmethod", "property", "bytearray",
    "os", "sys", "subprocess", "socket", "builtins", "importlib",
})
# numpy attributes that reach files, C pointers or Python internals.
DENIED_ATTRS = frozenset({
    "load", "save", "savez", "savez_compressed", "loadtxt", "savetxt", "genfromtxt",
    "fromfile", "tofile", "memmap", "fromregex", "DataSource", "ctypeslib", "ctypes",
    "f2py", "distutils", "testing", "format", "format_map", "dump", "dumps", "open",
    "system", "popen", "npyio", "show_config", "info", "lookfor", "source", "gi_frame",
    "f_globals", "f_locals", "f_back", "tb_frame", "cr_frame", "ag_frame",
})


def check_source(source: str) -> list[str]:
    """Reasons the source is not an acceptable rule (empty list: accepted).

    >>> check_source("import numpy as np\\ndef detect(values, timestamps):\\n    return values > 1")
    []
    >>> check_source("import os\\ndef detect(v, t):\\n    return os.system('x')")[0]
    "line 1: import of 'os' (only numpy may be imported)"
    """
    if len(source) > MAX_SOURCE_CHARS:
        return [f"source is {len(source)} characters, more than {MAX_SOURCE_CHARS}"]
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return [f"line {e.lineno}: syntax error: {e.msg}"]
    except (ValueError, RecursionError, MemoryError) as e:
        return [f"source does not parse: {type(e).__name__}: {e}"]
    reasons: list[str] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not _module_ok(alias.name):
                    reasons.append(f"line {line}: import of {alias.name!r} "
                                   f"(only numpy may be imported)")
        elif isinstance(node, ast.ImportFrom):
            if node.level or not _module_ok(node.module or ""):
                reasons.append(f"line {line}: import from {node.module!r} "
                               f"(only numpy may be imported)")
            for alias in node.names:
                if alias.name == "*" or alias.name.startswith("_") or alias.name in DENIED_ATTRS:
                    reasons.append(f"line {line}: 'from {node.module} import {alias.name}' "
                                   f"is not allowed")
        elif isinstance(node, ast.Name):
            if node.id.startswith("__") or node.id in DENIED_NAMES:
                reasons.append(f"line {line}: name {node.id!r} is not allowed")
        elif isinstance(node, ast.Attribute):
            if node.attr.startswith("_") or node.attr in DENIED_ATTRS:
                reasons.append(f"line {line}: attribute {node.attr!r} is not allowed")
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            reasons.append(f"line {line}: global/nonlocal is not allowed")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name.startswith("__"):
                reasons.append(f"line {line}: definition named {node.name!r} is not allowed")
            if node.decorator_list:
                reasons.append(f"line {line}: decorators are not allowed")
    has_detect = any(
        (isinstance(n, ast.FunctionDef) and n.name == "detect")
        or (isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "detect"
                                              for t in n.targets))
        for n in tree.body)
    if not has_detect:
        reasons.append("no top-level function 'detect(values, timestamps)'")
    return reasons


def _module_ok(name: str) -> bool:
    parts = name.split(".")
    return (parts[0] in ALLOWED_MODULES
            and not any(p.startswith("_") or p in DENIED_ATTRS for p in parts[1:]))
