"""Content hashes behind every "already done" marker: content, not mtimes, because
stages rewrite identical files and copies keep no mtimes."""
from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dir_digest(path: str | Path) -> str:
    """Hash of the names and bytes of a folder's visible files (e.g. a Kaldi data dir)."""
    h = hashlib.sha1()
    for f in sorted(Path(path).iterdir()):
        if f.is_file() and not f.name.startswith("."):
            h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()
