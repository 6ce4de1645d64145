"""Intent posteriors over several worker processes (``speechlm slu predict --nj N``).

Each utterance is classified on its own (its shots are chosen from its own input, its
prompt fitted alone), so dealing the utterances to N processes, each with its own copy of
the LM, gives the posteriors of one process: the recipe's ``nj`` for the LLM pass, as for
decoding. Processes are spawned (no fork: torch and tokenizers keep threads). Work goes out
in small chunks, so a slow chunk does not hold the others and the progress bar moves.
``score_texts`` ranks the labels after each of many texts the same way (the hypotheses of
``speechlm slu tune-marginal``'s grid).
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


def _predict_chunk(chunk: dict) -> dict[str, list[float]]:
    return _CLASSIFIER.predict_posteriors(chunk, progress=False)


def _score_chunk(texts: list[str]) -> dict[str, list[float]]:
    return {t: _CLASSIFIER.scores(t) for t in texts}


def worker_threads(nj: int, threads: int | None = None) -> int:
    """Torch threads per worker: ``threads`` when given, else the cores shared out."""
    return threads if threads is not None else max(1, (os.cpu_count() or 1) // nj)


def _in_workers(model_dir: str | Path, work: Any, chunks: list, nj: int, *,
                load_kwargs: dict[str, Any] | None, threads: int | None, progress: bool,
                desc: str, unit: str) -> dict:
    """``work(chunk)`` (a dict) of every chunk in up to ``nj`` workers, merged."""
    if nj < 1:
        raise ValueError(f"nj must be >= 1, got {nj}")
    out: dict = {}
    if not chunks:
        return out
    ctx = multiprocessing.get_context("spawn")
    init = (str(model_dir), dict(load_kwargs or {}), worker_threads(nj, threads))
    with ProcessPoolExecutor(min(nj, len(chunks)), mp_context=ctx, initializer=_load,
                             initargs=init) as pool, \
            tqdm(total=sum(map(len, chunks)), disable=not progress, desc=f"{desc} x{nj}",
                 unit=unit) as bar:
        for done in as_completed([pool.submit(work, c) for c in chunks]):
            got = done.result()
            out.update(got)
            bar.update(len(got))
    return out


def _chunks(items: list, size: int) -> list:
    if size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {size}")
    return [items[i:i + size] for i in range(0, len(items), size)]


def predict_posteriors_parallel(model_dir: str | Path, inputs: dict, nj: int, *,
                                load_kwargs: dict[str, Any] | None = None,
                                threads: int | None = None, chunk_size: int = 8,
                                progress: bool = True) -> dict[str, list[float]]:
    """``IntentClassifier.predict_posteriors(inputs)`` (label log posteriors) of
    ``load_classifier(model_dir, **load_kwargs)`` in ``nj`` worker processes.

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
    utts = c_sorted(inputs)
    chunks = [{u: inputs[u] for u in part} for part in _chunks(utts, chunk_size)]
    out = _in_workers(model_dir, _predict_chunk, chunks, nj, load_kwargs=load_kwargs,
                      threads=threads, progress=progress, desc="slu", unit="utt")
    return {u: out[u] for u in utts}


def score_texts(model_dir: str | Path, texts: list[str], nj: int, *,
                load_kwargs: dict[str, Any] | None = None, threads: int | None = None,
                chunk_size: int = 8, progress: bool = True) -> dict[str, list[float]]:
    """``IntentClassifier.scores(text)`` (label scores) of every distinct text, in ``nj``
    worker processes: what ``speechlm slu tune-marginal --nj`` ranks once, before its grid.
    """
    distinct = list(dict.fromkeys(texts))
    return _in_workers(model_dir, _score_chunk, _chunks(distinct, chunk_size), nj,
                       load_kwargs=load_kwargs, threads=threads, progress=progress,
                       desc="rank", unit="hyp")
