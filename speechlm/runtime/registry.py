"""Name -> lazy ``"module:Class"`` registries for the runtime's plug points.

As in vLLM's backend registry, a name maps to an import path that is resolved only when
that name is chosen, so an optional dependency (a Triton kernel, an offload library, a
power-management package) is imported only by the users who pick it.

>>> r = Registry("demo", {"ordered": "collections:OrderedDict"})
>>> r.resolve("ordered").__name__
'OrderedDict'
>>> r.resolve("nope")
Traceback (most recent call last):
...
ValueError: unknown demo 'nope'; registered: ordered
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping


class Registry:
    """A named set of plug-in classes, each stored as a ``"module:Qualname"`` string.

    Args:
        kind: what the entries are (used in error messages), e.g. ``"attention backend"``.
        entries: initial ``name -> "module:Qualname"`` mapping.
    """

    def __init__(self, kind: str, entries: Mapping[str, str] | None = None) -> None:
        self.kind = kind
        self._paths: dict[str, str] = {}
        for name, path in (entries or {}).items():
            self.register(name, path)

    def register(self, name: str, path: str, *, replace: bool = False) -> None:
        """Add ``name`` -> ``path`` (``"package.module:Class"``); nothing is imported here."""
        if not name or not name.replace("_", "").isalnum() or name.lower() != name:
            raise ValueError(f"{self.kind} names are short snake_case, got {name!r}")
        if path.count(":") != 1:
            raise ValueError(
                f"{self.kind} {name!r}: path must look like 'module:Class', got {path!r}"
            )
        if name in self._paths and not replace and self._paths[name] != path:
            raise ValueError(
                f"{self.kind} {name!r} is already registered as {self._paths[name]!r}; "
                "pass replace=True to override it"
            )
        self._paths[name] = path

    def names(self) -> list[str]:
        return sorted(self._paths)

    def __contains__(self, name: object) -> bool:
        return name in self._paths

    def path(self, name: str) -> str:
        if name not in self._paths:
            raise ValueError(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}")
        return self._paths[name]

    def resolve(self, name: str) -> type:
        """Import and return the class registered as ``name``."""
        module_name, _, qualname = self.path(name).partition(":")
        obj: object = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        return obj  # type: ignore[return-value]
