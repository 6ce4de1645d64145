"""A kNN-LM datastore on disk: FAISS index of keys -> next-token values, with its config.

One directory per store, written atomically (a temporary sibling, renamed at the end, so a
killed build never leaves a directory that loads)::

    DIR/datastore.json   format version, config, fingerprint, sizes, build time
    DIR/index.faiss      the FAISS index of the keys (flat, IVF or IVF-PQ)
    DIR/values.npy       int64 next-token id of each key (memory-mapped when read)

The fingerprint names what made the keys (``"text|llm=<hash>"`` or
``"speech|llm=<hash>|prefix=<hash>"``); :meth:`Datastore.load` refuses a store whose
fingerprint differs from the decoder's, showing both. Reading memory-maps the index (flat
and IVF) and the values, so a store larger than memory is paged in by the OS.

>>> import numpy as np, tempfile, os
>>> keys = np.eye(4, 8, dtype=np.float32)
>>> d = os.path.join(tempfile.mkdtemp(), "store")
>>> store = build_datastore(keys, np.arange(4), d, fingerprint="text|llm=demo")
>>> dist, vals = Datastore.load(d, expect_fingerprint="text|llm=demo").search(keys[1:2], 2)
>>> int(vals[0, 0]), float(dist[0, 0])
(1, 0.0)
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

FORMAT_VERSION = 1
META = "datastore.json"
INDEX = "index.faiss"
VALUES = "values.npy"
INDEX_KINDS = ("flat", "ivf", "ivfpq")


class DatastoreError(ValueError):
    """A store that cannot be built or used (names the directory and the reason)."""


class FingerprintMismatch(DatastoreError):
    """The store's keys come from another LLM or key type than the decoder's."""


@dataclass(frozen=True)
class DatastoreConfig:
    """How the index is built.

    Args:
        index: ``flat`` (exact, best below ~1M keys), ``ivf`` (inverted lists, exact
            vectors) or ``ivfpq`` (inverted lists, product-quantised vectors: smallest).
        nlist: IVF cells; 0 = ``4 * sqrt(N)`` (at most N / 39, FAISS's training minimum).
        pq_m: sub-quantisers of IVF-PQ (must divide the key dimension), 8 bits each.
        nprobe: cells searched per query (IVF).
    """

    index: str = "flat"
    nlist: int = 0
    pq_m: int = 16
    nprobe: int = 8

    def __post_init__(self) -> None:
        if self.index not in INDEX_KINDS:
            raise ValueError(f"index must be one of {INDEX_KINDS}, got {self.index!r}")
        if self.nlist < 0 or self.pq_m < 1 or self.nprobe < 1:
            raise ValueError(f"nlist >= 0, pq_m >= 1, nprobe >= 1; got {self}")


def _faiss():
    import faiss  # a missing one is reported as the llm extra (speechlm.core.extras)

    return faiss


def _make_index(config: DatastoreConfig, keys: np.ndarray):
    faiss = _faiss()
    n, d = keys.shape
    if config.index == "flat":
        return faiss.IndexFlatL2(d), 0
    nlist = config.nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))
    if n < nlist:
        raise DatastoreError(f"{config.index} with nlist={nlist} needs at least {nlist} keys, "
                             f"got {n}: use index=flat for a store this small")
    if config.index == "ivf":
        return faiss.index_factory(d, f"IVF{nlist},Flat"), nlist
    if d % config.pq_m:
        raise DatastoreError(f"pq_m={config.pq_m} does not divide the key dimension {d}")
    index = faiss.index_factory(d, f"IVF{nlist},PQ{config.pq_m}x8")
    # polysemous codes serve Hamming pre-filtering, which search here never uses; their
    # training is most of the build time
    faiss.downcast_index(index).do_polysemous_training = False
    return index, nlist


def check_keys(keys: np.ndarray, values: np.ndarray, names: list[str] | None = None) -> None:
    """Refuse an empty store, a shape mismatch or NaN/inf keys (naming the first bad row).

    Args:
        names: optional label per key row (e.g. ``utt:position``) for the error message.
    """
    if keys.ndim != 2 or keys.shape[0] == 0:
        raise DatastoreError(f"no keys to store (keys shape {keys.shape}): is the data empty?")
    if values.shape != (keys.shape[0],):
        raise DatastoreError(f"{keys.shape[0]} keys but values of shape {values.shape}")
    bad = ~np.isfinite(keys).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        where = f" ({names[i]})" if names else ""
        raise DatastoreError(f"key row {i}{where} has NaN or infinite values "
                             f"({int(bad.sum())} bad rows)")
    if (values < 0).any():
        raise DatastoreError("values must be token ids >= 0")


def build_datastore(
    keys: np.ndarray,
    values: np.ndarray,
    out: str | os.PathLike,
    *,
    fingerprint: str,
    config: DatastoreConfig | None = None,
    info: dict | None = None,
    names: list[str] | None = None,
    overwrite: bool = False,
    chunk: int = 65536,
) -> Datastore:
    """Index ``keys`` (N, D) -> ``values`` (N,) and write the store to ``out`` atomically.

    Args:
        fingerprint: what produced the keys (LLM and key type); checked when loading.
        info: extra JSON-able facts recorded in ``datastore.json`` (data dir, counts...).
        names: optional label per row for error messages.
        overwrite: replace an existing store at ``out``.

    Raises:
        DatastoreError: empty store, NaN keys, bad IVF/PQ sizes, ``out`` exists.
    """
    config = config or DatastoreConfig()
    faiss = _faiss()
    out = Path(out)
    values = np.asarray(values, dtype=np.int64)
    check_keys(keys, values, names)
    if out.exists() and not overwrite:
        raise DatastoreError(f"{out} exists; pass overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.tmp-*"):  # left by a killed build
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    tmp.mkdir()
    start = time.perf_counter()
    try:
        index, nlist = _make_index(config, keys)
        if not index.is_trained:
            rng = np.random.default_rng(0)
            sample = keys[np.sort(rng.choice(len(keys), min(len(keys), 64 * max(nlist, 1)),
                                             replace=False))]
            index.train(np.ascontiguousarray(sample, dtype=np.float32))
        for s in range(0, len(keys), chunk):
            index.add(np.ascontiguousarray(keys[s : s + chunk], dtype=np.float32))
        faiss.write_index(index, str(tmp / INDEX))
        np.save(tmp / VALUES, values)
        meta = {
            "format_version": FORMAT_VERSION,
            "fingerprint": fingerprint,
            "config": asdict(config),
            "nlist": nlist,
            "num_keys": int(len(keys)),
            "dim": int(keys.shape[1]),
            "build_s": round(time.perf_counter() - start, 3),
            "bytes": int((tmp / INDEX).stat().st_size + (tmp / VALUES).stat().st_size),
            "info": info or {},
        }
        (tmp / META).write_text(json.dumps(meta, indent=1) + "\n")  # last: marks it complete
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            shutil.rmtree(old)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return Datastore.load(out)


class Datastore:
    """A loaded store: ``search(queries (N, D), k) -> (sq. distances, token ids)``.

    It satisfies ``speechlm.runtime.retrieval.Retriever``; use :meth:`load`.
    """

    def __init__(self, path: Path, index, values: np.ndarray, meta: dict) -> None:
        self.path, self.index, self.values, self.meta = path, index, values, meta

    @property
    def fingerprint(self) -> str:
        return self.meta["fingerprint"]

    def __len__(self) -> int:
        return self.meta["num_keys"]

    @classmethod
    def load(cls, path: str | os.PathLike, *, expect_fingerprint: str | None = None,
             mmap: bool = True, nprobe: int | None = None) -> Datastore:
        """Open a store (memory-mapped), checking its version, sizes and fingerprint.

        Raises:
            DatastoreError: not a finished store (no ``datastore.json``: a killed build or
                a wrong path), another format version, or files that disagree.
            FingerprintMismatch: ``expect_fingerprint`` differs (both are shown).
        """
        faiss = _faiss()
        path = Path(path)
        if not (path / META).is_file():
            raise DatastoreError(f"{path}: not a datastore (no {META}; an unfinished build "
                                 f"never leaves one): run 'speechlm retrieval build'")
        meta = json.loads((path / META).read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise DatastoreError(f"{path}: format version {meta.get('format_version')}, this "
                                 f"speechlm reads {FORMAT_VERSION}: rebuild the store")
        if expect_fingerprint is not None and meta["fingerprint"] != expect_fingerprint:
            raise FingerprintMismatch(
                f"{path}: the store was built for {meta['fingerprint']!r} but the decoder is "
                f"{expect_fingerprint!r}; rebuild it with this LLM and key type")
        kind = meta["config"]["index"]
        flags = 0
        if mmap:
            flags = faiss.IO_FLAG_MMAP_IFC if kind == "flat" else faiss.IO_FLAG_MMAP
        index = faiss.read_index(str(path / INDEX), flags)
        values = np.load(path / VALUES, mmap_mode="r" if mmap else None)
        if index.ntotal != meta["num_keys"] or len(values) != meta["num_keys"]:
            raise DatastoreError(f"{path}: {META} says {meta['num_keys']} keys, the index has "
                                 f"{index.ntotal} and {VALUES} {len(values)}")
        if kind != "flat":
            faiss.extract_index_ivf(index).nprobe = nprobe or meta["config"]["nprobe"]
        return cls(path, index, values, meta)

    def search(self, queries: torch.Tensor | np.ndarray, k: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Squared-L2 distances and token ids ``(N, k)`` of the nearest keys (-1: none)."""
        q = queries.numpy() if isinstance(queries, torch.Tensor) else np.asarray(queries)
        q = np.ascontiguousarray(q, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.meta["dim"]:
            raise DatastoreError(f"{self.path}: queries of shape {q.shape}, the keys are "
                                 f"{self.meta['dim']}-dimensional")
        dist, idx = self.index.search(q, k)
        vals = np.where(idx >= 0, np.asarray(self.values)[np.clip(idx, 0, None)], -1)
        return torch.from_numpy(dist), torch.from_numpy(vals.astype(np.int64))
