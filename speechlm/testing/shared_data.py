"""The shared datasets for tests: ``speechlm.core.paths`` plus one test-only fallback.

Library code (the demo's examples, recipes' Python) uses ``speechlm.core.paths.data_dir``
directly; tests use this wrapper, which also finds ``shared/data`` beside any *ancestor*
of the checkout or of the working directory, so a worktree nested in a project directory
(``<project>/wt/<name>`` beside ``<project>/shared/data``) runs the same tests as the main
checkout. Tests that need data skip when this returns None.
"""
from __future__ import annotations

from pathlib import Path

from speechlm.core.paths import checkout_root, data_dir, data_root


def shared_data_root() -> Path | None:
    """``speechlm.core.paths.data_root()``, else the nearest ``shared/data`` beside an
    ancestor of the checkout or of the working directory; None when there is none."""
    root = data_root()
    if root is not None:
        return root
    starts = [p for p in (checkout_root(), Path.cwd().resolve()) if p is not None]
    for start in starts:
        for parent in start.parents:
            candidate = parent / "shared" / "data"
            if candidate.is_dir():
                return data_root(candidate)  # logs which copy the tests use
    return None


def shared_data_dir(name: str = "") -> Path | None:
    """``<shared data root>/name`` when it exists, else None.

    >>> shared_data_dir("no-such-corpus") is None
    True
    """
    root = shared_data_root()
    return None if root is None else data_dir(name, root=root)
