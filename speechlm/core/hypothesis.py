"""A recognition hypothesis, the unit every decoder and rescorer passes around."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Hypothesis:
    """One hypothesis of an utterance.

    Args:
        text: space-separated words.
        score: total natural-log score the decoder ranked by (higher is better).
        tokens: model tokens (e.g. characters) behind ``text``.
        scores: score parts by name (``"ctc"``, ``"decoder"``, ``"lm"``...), natural log.

    >>> h = Hypothesis("seven", -0.12, tokens=("s", "e", "v", "e", "n"))
    >>> h.to_json()
    {'text': 'seven', 'score': -0.12}
    """

    text: str
    score: float
    tokens: tuple[str, ...] = ()
    scores: tuple[tuple[str, float], ...] = ()

    def to_json(self) -> dict:
        out = {"text": self.text, "score": round(float(self.score), 4)}
        if self.scores:
            out["scores"] = {k: round(float(v), 4) for k, v in self.scores}
        return out
