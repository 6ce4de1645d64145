"""N-best rescoring with an LLM through the runtime, swept over weights icefall-style.

For hypothesis ``h`` of an utterance::

    tot_score(h) = first_pass_score(h) + llm_scale * llm_score(h) + length_bonus * words(h)

``first_pass_score`` is the ``score`` the decoder wrote in ``nbest.jsonl`` (acoustic plus
graph / attention scores, as that decoder ranks), ``llm_score`` the LLM's natural-log
probability of the words followed by end-of-sentence, given an optional prompt. The LLM
scores are computed once per hypothesis (one shared-prefix call per utterance); every
setting of the sweep is then a cheap re-ranking. Results are keyed by setting, as
``icefall/decode.py``'s rescorers return them (``"llm_scale_0.3_bonus_0.5"``).

This module holds the one rescoring formula (:func:`tot_score`); the Python API
(``speechlm.rescore_nbest``), the HTTP server and ``speechlm rescore`` all rank by it.

>>> from speechlm.core.hypothesis import Hypothesis
>>> hyps = {"u1": [Hypothesis("a b", -1.0), Hypothesis("a c", -1.2)]}
>>> pick_best(hyps, {"u1": [-9.0, -3.0]}, llm_scale=0.5, length_bonus=0.0)
{'u1': 'a c'}
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from speechlm.core.hypothesis import Hypothesis
from speechlm.core.nbest_jsonl import read_nbest_jsonl

__all__ = ["RescoreConfig", "llm_scores", "pick_best", "read_nbest_jsonl", "rerank",
           "setting_key", "sweep", "tot_score"]


def setting_key(llm_scale: float, length_bonus: float) -> str:
    return f"llm_scale_{llm_scale:g}_bonus_{length_bonus:g}"


@dataclass(frozen=True)
class RescoreConfig:
    """What the LLM is asked: ``prompt`` is a prefix shared by all hypotheses (may be '')."""

    prompt: str = ""
    append_eos: bool = True
    batch_size: int = 16

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


def llm_scores(llm, nbest: dict[str, list[Hypothesis]], config: RescoreConfig = RescoreConfig(), *,
               cache: str | os.PathLike | None = None, progress: bool = True
               ) -> dict[str, list[float]]:
    """LLM log-probability of every hypothesis: utt -> one float per hypothesis.

    Args:
        llm: any ``speechlm.runtime.LanguageModel`` (local ``LLM`` or ``RemoteLLM``).
        nbest: hypotheses per utterance.
        config: prompt and scoring options.
        cache: a JSON-lines file of finished utterances; a re-run scores only the rest
            (the file's first line records what it was computed for, and a different
            LLM/prompt starts it over).
    """
    done: dict[str, list[float]] = {}
    stamp = hashlib.sha256(json.dumps(
        [config.prompt, config.append_eos, getattr(llm, "name_or_path", repr(type(llm)))]
    ).encode()).hexdigest()
    writer = None
    if cache is not None:
        cache = Path(cache)
        if cache.is_file():
            lines = cache.read_text(encoding="utf-8").splitlines()
            if lines and json.loads(lines[0]).get("stamp") == stamp:
                for line in lines[1:]:
                    row = json.loads(line)
                    if row["utt"] in nbest and len(row["llm"]) == len(nbest[row["utt"]]):
                        done[row["utt"]] = row["llm"]
        # rewrite with what is still valid, then append as we go
        cache.parent.mkdir(parents=True, exist_ok=True)
        writer = open(cache, "w", encoding="utf-8")
        writer.write(json.dumps({"stamp": stamp}) + "\n")
        writer.writelines(json.dumps({"utt": u, "llm": s}) + "\n" for u, s in done.items())
    try:
        for utt in tqdm([u for u in nbest if u not in done], desc="llm rescore",
                        disable=not progress, mininterval=2.0):
            texts = [h.text for h in nbest[utt]]
            scores = _score_texts(llm, texts, config, utt)
            done[utt] = scores
            if writer is not None:
                writer.write(json.dumps({"utt": utt, "llm": scores}) + "\n")
                writer.flush()
    finally:
        if writer is not None:
            writer.close()
    return done


def _score_texts(llm, texts: Sequence[str], config: RescoreConfig, utt: str) -> list[float]:
    nonempty = [k for k, t in enumerate(texts) if t.strip()]
    values: list[float] = []
    if nonempty:
        try:
            values = [float(v) for v in llm.score(
                [texts[k] for k in nonempty], prefix=config.prompt or None,
                append_eos=config.append_eos, batch_size=config.batch_size)]
        except ValueError as e:
            raise ValueError(f"utterance {utt}: {e}") from e
    # The runtime refuses empty texts. An empty hypothesis (the decoder heard nothing) gets
    # the lowest LLM score of its list, so the LLM term never prefers it.
    floor = min(values, default=0.0)
    scores = [floor] * len(texts)
    for k, v in zip(nonempty, values, strict=True):
        scores[k] = v
    return scores


def tot_score(first_pass: float, llm_score: float, words: int, *, llm_scale: float,
              length_bonus: float) -> float:
    """The rescoring formula: ``first_pass + llm_scale * llm_score + length_bonus * words``."""
    return first_pass + llm_scale * llm_score + length_bonus * words


def rerank(hyps: Sequence[Hypothesis], llm: Sequence[float], *, llm_scale: float,
           length_bonus: float = 0.0) -> list[Hypothesis]:
    """``hyps`` re-ranked by :func:`tot_score`, best first (ties keep the first pass order).

    Each returned hypothesis has ``score`` = the total and score parts ``first_pass`` and
    ``llm`` beside the first pass's own parts.
    """
    if len(hyps) != len(llm):
        raise ValueError(f"{len(hyps)} hypotheses but {len(llm)} LLM scores")
    ranked = []
    for k, (h, lm) in enumerate(zip(hyps, llm, strict=True)):
        total = tot_score(h.score, lm, len(h.words), llm_scale=llm_scale,
                          length_bonus=length_bonus)
        parts = (("first_pass", float(h.score)), ("llm", float(lm)),
                 *((n, v) for n, v in h.scores if n not in ("first_pass", "llm")))
        ranked.append((-total, k, Hypothesis(h.text, total, h.tokens, parts)))
    return [h for _, _, h in sorted(ranked, key=lambda r: (r[0], r[1]))]


def pick_best(nbest: dict[str, list[Hypothesis]], llm: dict[str, list[float]], *,
              llm_scale: float, length_bonus: float) -> dict[str, str]:
    """The best hypothesis text of each utterance under one setting."""
    best = {}
    for utt, hyps in nbest.items():
        ranked = rerank(hyps, llm[utt], llm_scale=llm_scale, length_bonus=length_bonus)
        best[utt] = ranked[0].text if ranked else ""
    return best


def sweep(nbest: dict[str, list[Hypothesis]], llm: dict[str, list[float]],
          llm_scales: Iterable[float], length_bonuses: Iterable[float]
          ) -> dict[str, dict[str, str]]:
    """Every (llm_scale, length_bonus) setting -> utt -> best text, keyed by setting."""
    bonuses = list(length_bonuses)
    return {setting_key(s, b): pick_best(nbest, llm, llm_scale=s, length_bonus=b)
            for s in llm_scales for b in bonuses}
