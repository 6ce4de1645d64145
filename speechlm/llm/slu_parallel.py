"""Intent prediction over several worker processes (``speechlm slu predict --nj N``).

Each utterance is classified on its own (its shots are chosen from its own input, its
prompt fitted alone), so dealing the utterances to N processes, each with its own copy of
the LM, gives the labels of one process: the recipe's ``nj`` for the LLM pass, as for
decoding. Processes are spawned (no fork: torch and tokenizers keep threads). Work goes out
in small chunks, so a slow chunk does not hold the others and the progress bar moves.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from tqdm import tqdm

from speechlm.data.kaldi_dir import c_sorted

_CLASSIFIER = None  # one per worker process, loaded by _load


def _load(model_dir: str, load_kwargs: dict[str, Any], threads: int) -> None:
    import torch

    from speechlm.llm.slu import load_classifier

    torch.set_num_threads(threads)
    global _CLASSIFIER
    _CLASSIFIER, _ = load_classifier(model_dir, **load_kwargs)


def _predict_chunk(chunk: dict) -> dict[str, str]:
    return _CLASSIFIER.predict(chunk, progress=False)


def worker_threads(nj: int, threads: int | None = None) -> int:
    """Torch threads per worker: ``threads`` when given, else the cores shared out."""
    return threads if threads is not None else max(1, (os.cpu_count() or 1) // nj)


def predict_parallel(model_dir: str | Path, inputs: dict, nj: int, *,
                     load_kwargs: dict[str, Any] | None = None, threads: int | None = None,
                     chunk_size: int = 8, progress: bool = True) -> dict[str, str]:
    """``IntentClassifier.predict(inputs)`` of ``load_classifier(model_dir, **load_kwargs)``
    in ``nj`` worker processes.

    Args:
        model_dir: an SLU dir.
        inputs: utterance -> input, as ``IntentClassifier.predict`` takes.
        nj: worker processes (at most one per chunk are started).
        load_kwargs: ``load_classifier``'s keywords (prompt, llm, llm_url, llm_model).
        threads: torch threads per worker (default: the cores shared out).
        chunk_size: utterances a worker takes at a time.

    Raises:
        ValueError: ``nj`` or ``chunk_size`` below 1.
    """
    if nj < 1 or chunk_size < 1:
        raise ValueError(f"nj and chunk_size must be >= 1, got {nj} and {chunk_size}")
    utts = c_sorted(inputs)
    chunks = [{u: inputs[u] for u in utts[i:i + chunk_size]}
              for i in range(0, len(utts), chunk_size)]
    out: dict[str, str] = {}
    if not chunks:
        return out
    ctx = multiprocessing.get_context("spawn")
    init = (str(model_dir), dict(load_kwargs or {}), worker_threads(nj, threads))
    with ProcessPoolExecutor(min(nj, len(chunks)), mp_context=ctx, initializer=_load,
                             initargs=init) as pool, \
            tqdm(total=len(utts), disable=not progress, desc=f"slu x{nj}", unit="utt") as bar:
        for done in as_completed([pool.submit(_predict_chunk, c) for c in chunks]):
            got = done.result()
            out.update(got)
            bar.update(len(got))
    return {u: out[u] for u in utts}
