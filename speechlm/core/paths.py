"""Where the shared datasets live (FSDD, example speech, SLURP text ...), found without any
machine path in the code.

Looked up in this order:

1. the ``root`` argument, when a caller passes one;
2. the ``SPEECHLM_DATA`` environment variable;
3. ``../shared/data`` beside the root of a source checkout (the directory that holds
   ``pyproject.toml`` and ``speechlm/``): a development convenience only; an installed
   wheel has no checkout and skips this step.

A root given by argument or by ``SPEECHLM_DATA`` that does not exist is an error, not a
silent fall-through to another copy. The copy used is logged once (INFO), with where it
came from, so a run on the wrong data shows up in its log.

>>> data_dir("no-such-corpus", root=".") is None
True
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

ENV_VAR = "SPEECHLM_DATA"
_logged: set[tuple[Path, str]] = set()


def checkout_root() -> Path | None:
    """The source checkout this package runs from, or None for an installed package."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "speechlm").is_dir() else None


def data_root(root: str | Path | None = None) -> Path | None:
    """The shared data root (see the module docstring for the order); None when none is found.

    Raises:
        FileNotFoundError: ``root`` or ``$SPEECHLM_DATA`` names a directory that does not
            exist.
    """
    if root is not None:
        found, source = Path(root), "argument"
    elif os.environ.get(ENV_VAR):
        found, source = Path(os.environ[ENV_VAR]), f"${ENV_VAR}"
    else:
        checkout = checkout_root()
        found = checkout.parent / "shared" / "data" if checkout is not None else None
        if found is None or not found.is_dir():
            return None
        source = f"beside the checkout {checkout}"
    if not found.is_dir():
        raise FileNotFoundError(f"shared data directory {found} (from {source}) does not exist")
    found = found.resolve()
    if (found, source) not in _logged:
        _logged.add((found, source))
        logger.info("shared data: %s (from %s)", found, source)
    return found


def data_dir(name: str = "", root: str | Path | None = None) -> Path | None:
    """``<data root>/name`` when it exists, else None (callers skip or say what is missing).

    Raises:
        FileNotFoundError: as ``data_root``.
    """
    base = data_root(root)
    if base is None:
        return None
    path = base / name
    return path if path.exists() else None
