"""Pick the marginalized inputs' settings on dev: how many hypotheses, how sharp their weights.

``nbest_marg`` / ``wcn_marg`` average the label posteriors of an utterance's ``marginal_k``
best hypotheses with the hypotheses' weights (``IntentClassifier.marginal_scores``). How many
to read, and how much to trust the first pass's weights (``nbest_scale``, ``wcn_path_scale``:
0 counts every kept hypothesis the same; a recognizer that is sure of a wrong 1-best makes
the posteriors a poor prior), is a dev-set choice, as the WCN's acoustic scale is
(``speechlm calibrate-wcn``).

Every candidate of the grid reads the same hypotheses, so the classifier's cache of label
rankings makes the grid cost what its largest ``k`` costs: the LM ranks each distinct
hypothesis once (the largest ``k`` goes first).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from speechlm.data.kaldi_dir import c_sorted
from speechlm.llm.serialize import (
    MARGINAL_KINDS,
    SerializeConfig,
    input_kind,
    load_weighted_hypotheses,
    read_utt2intent,
)

SCALE_FIELD = {"nbest_marg": "nbest_scale", "wcn_marg": "wcn_path_scale"}


def read_dev_references(dev: Sequence[tuple[str | Path, str | Path]]) -> dict[str, str]:
    """The intents of every dev set's ``DATA_DIR/utt2intent`` (utterance ids must differ).

    Raises:
        FileNotFoundError: a data dir without utt2intent.
        ValueError: an utterance id in two dev sets.
    """
    refs: dict[str, str] = {}
    for _, data_dir in dev:
        ref = read_utt2intent(Path(data_dir) / "utt2intent")
        both = sorted(set(ref) & set(refs))
        if both:
            raise ValueError(f"{data_dir}/utt2intent: utterance {both[0]!r} (and {len(both) - 1} "
                             "more) is also in an earlier dev set")
        refs.update(ref)
    return refs


def candidate_inputs(kind: str, config: SerializeConfig,
                     dev: Sequence[tuple[str | Path, str | Path]], refs: dict[str, str]
                     ) -> dict[str, list[tuple[str, float]]]:
    """Weighted hypotheses of every dev utterance with a reference intent (the empty
    hypothesis where the first pass wrote nothing, as predict does)."""
    out: dict[str, list[tuple[str, float]]] = {}
    for decode_dir, data_dir in dev:
        hyps = load_weighted_hypotheses(kind, config, decode_dir=decode_dir, data_dir=data_dir)
        out.update({u: h for u, h in hyps.items() if u in refs})
    return {u: out.get(u, [("", 1.0)]) for u in refs}


def candidates(kind: str, config: SerializeConfig, dev: Sequence[tuple[str | Path, str | Path]],
               refs: dict[str, str], ks: Sequence[int], scales: Sequence[float]
               ) -> Iterator[tuple[int, float, dict[str, list[tuple[str, float]]]]]:
    """(k, scale, weighted hypotheses of every dev utterance) of each grid point, the
    largest k first (a ranking cache then ranks each hypothesis at its first sight)."""
    kind = input_kind(kind)
    if kind not in MARGINAL_KINDS:
        raise ValueError(f"tune_marginal tunes {MARGINAL_KINDS}, got {kind!r}")
    if not ks or not scales:
        raise ValueError("tune_marginal needs at least one k and one scale")
    for k in sorted(set(ks), reverse=True):
        for scale in scales:
            candidate = replace(config, marginal_k=k, **{SCALE_FIELD[kind]: scale})
            yield k, scale, candidate_inputs(kind, candidate, dev, refs)


def grid_texts(kind: str, config: SerializeConfig,
               dev: Sequence[tuple[str | Path, str | Path]], ks: Sequence[int],
               scales: Sequence[float]) -> list[str]:
    """Every distinct hypothesis the grid reads (the empty one included where a first pass
    wrote nothing), in order of first sight: what the LM must rank once."""
    refs = read_dev_references(dev)
    seen: dict[str, None] = {}
    for _, _, inputs in candidates(kind, config, dev, refs, ks, scales):
        for u in c_sorted(inputs):
            seen.update((text, None) for text, _ in inputs[u] or [("", 1.0)])
    return list(seen)


class ScoreTable:
    """Label scores computed beforehand (``speechlm.llm.slu_parallel.score_texts``) in the
    place of an ``IntentClassifier``: ``labels`` and ``scores(text, utt)``."""

    def __init__(self, labels: Sequence[str], table: dict[str, list[float]]) -> None:
        self.labels, self.table = list(labels), table

    def scores(self, text: str, utt: str = "?") -> list[float]:
        if text not in self.table:
            raise KeyError(f"utterance {utt}: hypothesis {text!r} was not scored")
        return self.table[text]


def tune_marginal(scorer: Any, kind: str, config: SerializeConfig,
                  dev: Sequence[tuple[str | Path, str | Path]], ks: Sequence[int],
                  scales: Sequence[float], progress: bool = True) -> list[dict[str, Any]]:
    """Dev intent accuracy of ``kind`` at every ``marginal_k`` x weight scale.

    Args:
        scorer: ``labels`` and ``scores(text, utt)``: an ``IntentClassifier`` (its ranking
            cache is what keeps the grid cheap) or a :class:`ScoreTable`.
        kind: ``nbest_marg`` or ``wcn_marg``.
        config: the other serialization settings.
        dev: (decode dir, data dir with utt2intent) pairs, pooled.
        ks, scales: the grid; scales set ``nbest_scale`` or ``wcn_path_scale``.

    Returns:
        One row per candidate: ``marginal_k``, the scale field, correct, total, accuracy.
    """
    from speechlm.llm.slu import accuracy, best_label, marginalize

    refs = read_dev_references(dev)
    field = SCALE_FIELD.get(input_kind(kind), "")
    rows = []
    for k, scale, inputs in candidates(kind, config, dev, refs, ks, scales):
        utts = tqdm(c_sorted(inputs), disable=not (progress and not rows), desc="tune",
                    unit="utt")
        hyp = {u: best_label(scorer.labels, marginalize(scorer.scores, inputs[u], u))
               for u in utts}
        acc = accuracy(hyp, refs)
        rows.append({"marginal_k": k, field: scale, "correct": acc["correct"],
                     "total": acc["total"], "accuracy": acc["accuracy"]})
    return rows


def best_candidate(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The row with the best dev accuracy; ties go to the smaller k (fewer rankings at test
    time), then to the scale nearest 1 (the first pass's weights as they are)."""
    if not rows:
        raise ValueError("no candidates")
    field = next(f for f in SCALE_FIELD.values() if f in rows[0])
    return max(rows, key=lambda r: (r["accuracy"], -r["marginal_k"], -abs(r[field] - 1.0)))
