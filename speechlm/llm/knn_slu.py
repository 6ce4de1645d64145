"""Intent by a vote of the few-shot pool's nearest sentences: the baseline ICL has to beat.

A small LM in context mostly copies the labels of the shots nearest the query, so the
question for in-context SLU is what the LM adds to that retrieval. ``KnnIntentClassifier``
answers it with no LM at all: the ``neighbors`` pool sentences whose sentence embeddings
(the encoder of ``embedding`` shot selection, MiniLM by default) are nearest the query's
vote for their intents, each with its cosine similarity (negative ones count 0).

A query is one text or weighted hypotheses (``nbest_marg`` / ``wcn_marg``: N-best entries or
WCN paths with their posteriors); the hypotheses' embeddings are averaged with the weights
(``ExamplePool.embedding_similarities``), so a confusion network votes with its expected
embedding. Posteriors are the votes plus a small floor, normalized over the labels; a query
without words gets equal posteriors.

>>> from speechlm.llm.icl import Example, ExamplePool
>>> vecs = {"wake me up": [1, 0], "set an alarm": [0.9, 0.1], "play jazz": [0, 1]}
>>> pool = ExamplePool([Example(str(i), t, "alarm_set" if i < 2 else "play_music")
...                     for i, t in enumerate(vecs)],
...                    embed=lambda texts: np.asarray([vecs.get(t, [0.5, 0.5]) for t in texts]))
>>> knn = KnnIntentClassifier(pool, ["alarm_set", "play_music"], neighbors=2)
>>> knn.classify("play jazz"), knn.classify([("play jazz", 0.2), ("wake me up", 0.8)])
('play_music', 'alarm_set')
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from speechlm.llm.icl import Example, ExamplePool, read_examples
from speechlm.llm.slu import EXAMPLES, SLUConfig, best_label, sentence_embedder

__all__ = ["KnnIntentClassifier", "load_knn_classifier"]

# the vote of a label no neighbour has, relative to a full vote (a similarity of 1): keeps
# every log posterior finite without moving the best label
_FLOOR = 1e-4

Query = str | Sequence[str] | Sequence[tuple[str, float]]


class KnnIntentClassifier:
    """``neighbors`` nearest pool sentences vote for ``labels`` (the SLU dir's label set)."""

    def __init__(self, pool: ExamplePool, labels: Sequence[str], neighbors: int) -> None:
        if neighbors < 1:
            raise ValueError(f"neighbors must be >= 1, got {neighbors}")
        self.pool, self.labels, self.neighbors = pool, list(labels), neighbors
        index = {label: k for k, label in enumerate(self.labels)}
        missing = sorted({e.intent for e in pool.examples} - set(index))
        if missing:
            raise ValueError(f"pool intents not among the labels: {missing[:5]}")
        self._label_of = np.asarray([index[e.intent] for e in pool.examples])

    def label_posteriors(self, query: Query, utt: str = "?") -> list[float]:
        """Log posterior of each label for one text, its serializations (longest first, as
        ``load_input_variants`` gives them) or weighted hypotheses."""
        if isinstance(query, str):
            hyps = [(query, 1.0)]
        elif query and isinstance(query[0], str):  # serializations, longest first: all words
            hyps = [(query[0], 1.0)]
        else:
            hyps = list(query)
        if any(w < 0 for _, w in hyps):
            raise ValueError(f"utterance {utt}: negative hypothesis weight")
        sims = self.pool.embedding_similarities(hyps)
        # nearest first, ties in pool order (as shot selection breaks them)
        nearest = np.lexsort((np.arange(len(sims)), -sims))[:self.neighbors]
        votes = np.full(len(self.labels), _FLOOR)
        np.add.at(votes, self._label_of[nearest], np.maximum(sims[nearest], 0.0))
        return np.log(votes / votes.sum()).tolist()

    def classify(self, query: Query, utt: str = "?") -> str:
        return best_label(self.labels, self.label_posteriors(query, utt))

    def predict_posteriors(self, inputs: Mapping[str, Query], progress: bool = True
                           ) -> dict[str, list[float]]:
        """utt -> label log posteriors (``IntentClassifier.predict_posteriors``'s form)."""
        return {u: self.label_posteriors(q, u)
                for u, q in tqdm(inputs.items(), desc="knn", disable=not progress,
                                 mininterval=2.0)}


def load_knn_classifier(slu_dir: str | Path, neighbors: int, *, encoder: str | None = None,
                        examples: Sequence[Example] | None = None
                        ) -> tuple[KnnIntentClassifier, SLUConfig]:
    """An in-context SLU dir's few-shot pool (or ``examples``), labels and shot encoder (or
    ``encoder``: a catalogue name or local dir) as a kNN classifier; its LM is not loaded.

    Raises:
        ValueError: a LoRA dir (it has no pool to vote), or a dir without examples.
    """
    slu_dir = Path(slu_dir)
    config = SLUConfig.load(slu_dir)
    if config.mode != "icl":
        raise ValueError(f"{slu_dir} is a {config.mode} SLU dir; kNN votes with an icl "
                         "dir's few-shot pool")
    if examples is None:
        if not (slu_dir / EXAMPLES).is_file():
            raise ValueError(f"{slu_dir} has no few-shot pool ({EXAMPLES}) to vote")
        examples = read_examples(slu_dir / EXAMPLES)
    pool = ExamplePool(examples, embed=sentence_embedder(encoder or config.prompt.shot_encoder))
    return KnnIntentClassifier(pool, config.labels, neighbors), config
