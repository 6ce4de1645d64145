"""Where the team's shared datasets live (``../shared/data`` next to a checkout).

Tests and examples that read real recordings find them here and skip when they are absent.
"""
from __future__ import annotations

import os
from pathlib import Path


def shared_data_dir(name: str = "") -> Path | None:
    """``$SPEECHLM_SHARED_DATA/name``, else ``shared/data/name`` beside an ancestor of this
    checkout; None when neither exists.

    >>> shared_data_dir("no-such-corpus") is None
    True
    """
    candidates = []
    if os.environ.get("SPEECHLM_SHARED_DATA"):
        candidates.append(Path(os.environ["SPEECHLM_SHARED_DATA"]))
    candidates += [p / "shared" / "data" for p in Path(__file__).resolve().parents]
    for root in candidates:
        path = root / name
        if path.exists():
            return path
    return None
