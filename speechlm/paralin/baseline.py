"""Sequence-classification baselines for ParalinGPT's two labels.

The paper compares its serialized multitask LLM with sequence classifiers. Here: a frozen
sentence encoder (MiniLM-L6 or mpnet from ``speechlm.encoders``) embeds the dialogue
window as text, speaker-tagged turns oldest first and the current turn last (the same
turns the serialized model reads, without their sentiments), and one logistic-regression
head per label is fitted on the training windows: the current utterance's sentiment and
the response's sentiment. It sees no speech.

>>> from speechlm.paralin.meld import Turn, Window
>>> t = lambda i, s, x: Turn("1", i, s, x, "neutral", "neutral")
>>> window_text(Window((t(0, "Ross", "Hi."),), t(1, "Rachel", "Hey!"), t(2, "Ross", "So?")))
'Ross: Hi. | Rachel: Hey!'
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from speechlm.paralin.meld import Window

__all__ = ["SentimentHeads", "window_text"]


def window_text(w: Window, context: bool = True) -> str:
    """The window's turns as one text: ``speaker: text`` joined by `` | ``, current last."""
    turns = [*w.context, w.current] if context else [w.current]
    return " | ".join(f"{t.speaker}: {t.text}" for t in turns)


class SentimentHeads:
    """Logistic-regression heads for the current and the response sentiment.

    Args:
        encoder: a loaded ``speechlm.encoders`` text encoder (``embed(texts) -> (N, D)``).
        context: embed the previous turns too (else the current turn only).
    """

    def __init__(self, encoder, *, context: bool = True, c: float = 1.0, seed: int = 0) -> None:
        self.encoder, self.context, self.c, self.seed = encoder, context, c, seed
        self.heads: dict[str, object] = {}

    def _x(self, windows: Sequence[Window]) -> np.ndarray:
        return np.asarray(self.encoder.embed([window_text(w, self.context) for w in windows]),
                          dtype=np.float32)

    def fit(self, windows: Sequence[Window]) -> SentimentHeads:
        from sklearn.linear_model import LogisticRegression

        if not windows:
            raise ValueError("SentimentHeads.fit: no training windows")
        x = self._x(windows)
        for key, labels in (("cur", [w.current.sentiment for w in windows]),
                            ("resp", [w.response.sentiment for w in windows])):
            if len(set(labels)) < 2:
                raise ValueError(f"SentimentHeads.fit: the training windows hold one {key} "
                                 f"sentiment only ({labels[0]!r}); nothing to classify")
            self.heads[key] = LogisticRegression(C=self.c, max_iter=2000,
                                                 random_state=self.seed).fit(x, labels)
        return self

    def predict(self, windows: Sequence[Window]) -> list[dict[str, str]]:
        """``[{"cur": label, "resp": label}, ...]`` in window order."""
        if not self.heads:
            raise RuntimeError("SentimentHeads.predict before fit")
        x = self._x(windows)
        cur, resp = self.heads["cur"].predict(x), self.heads["resp"].predict(x)
        return [{"cur": str(a), "resp": str(b)} for a, b in zip(cur, resp, strict=True)]


def run(train: Sequence[Window], evals: dict[str, Sequence[Window]], encoder, out: Path, *,
        context: bool = True) -> dict[str, dict]:
    """Fit on ``train``, score each eval set; writes ``out/paralin.json`` (with the fit
    time) and ``out/<set>/{scores.json,predictions.jsonl}`` in the recipe's layout."""
    from speechlm.paralin.model import weighted_f1

    t0 = time.time()
    heads = SentimentHeads(encoder, context=context).fit(train)
    fit_s = round(time.time() - t0, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "paralin.json").write_text(json.dumps({"kind": "sentiment_heads", "report": {
        "train_seconds": fit_s, "train_windows": len(train), "context": context,
        "encoder": getattr(encoder, "name", type(encoder).__name__)}}, indent=1) + "\n")
    scores = {}
    for name, windows in evals.items():
        preds = heads.predict(windows)
        rows = [{"cur": p["cur"], "cur_ref": w.current.sentiment, "resp": p["resp"],
                 "resp_ref": w.response.sentiment} for p, w in zip(preds, windows, strict=True)]

        def acc(key: str, rows=rows) -> float:
            return round(100 * sum(r[key] == r[f"{key}_ref"] for r in rows) / max(len(rows), 1),
                         2)

        sc = {"windows": len(rows), "cur_acc": acc("cur"),
              "cur_f1": weighted_f1([r["cur_ref"] for r in rows], [r["cur"] for r in rows]),
              "resp_acc": acc("resp"),
              "resp_f1": weighted_f1([r["resp_ref"] for r in rows], [r["resp"] for r in rows])}
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "scores.json").write_text(json.dumps(sc, indent=1) + "\n")
        (d / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        scores[name] = sc
    return scores
