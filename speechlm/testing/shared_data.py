"""Where the team's shared datasets live (``../shared/data`` next to a checkout).

Tests and examples that read real recordings find them here and skip when they are absent.
"""
from __future__ import annotations

import os
from pathlib import Path


def shared_data_dir(name: str = "") -> Path | None:
    """``$SPEECHLM_SHARED_DATA/name``, else ``shared/data/name`` beside an ancestor of this
    checkout or of the working directory, else ``/work/shared/data/name``; None when
    none exists.

    >>> shared_data_dir("no-such-corpus") is None
    True
    """
    candidates = []
    if os.environ.get("SPEECHLM_SHARED_DATA"):
        candidates.append(Path(os.environ["SPEECHLM_SHARED_DATA"]))
    candidates += [p / "shared" / "data" for p in Path(__file__).resolve().parents]
    candidates += [p / "shared" / "data" for p in Path.cwd().resolve().parents]
    # where the team's machines keep it, for checkouts made elsewhere (e.g. CI clones)
    candidates.append(Path("/work/shared/data"))
    for root in candidates:
        path = root / name
        if path.exists():
            return path
    return None
