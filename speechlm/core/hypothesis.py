"""A recognition hypothesis, the unit every decoder and rescorer passes around."""
from __future__ import annotations

from dataclasses import dataclass

EPS = "<eps>"  # the empty word: a deletion in alignments, lattices and confusion networks


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

    @property
    def words(self) -> list[str]:
        return self.text.split()

    def score_of(self, part: str, default: float | None = None) -> float | None:
        """The score part ``part`` (``"am"``, ``"llm"``...), ``default`` when absent."""
        return dict(self.scores).get(part, default)

    @classmethod
    def from_json(cls, obj: dict) -> Hypothesis:
        """The inverse of :meth:`to_json`; KeyError/TypeError/ValueError on a bad object."""
        scores = obj.get("scores") or {}
        if not isinstance(scores, dict):
            raise TypeError(f"scores must be an object, got {scores!r}")
        text = obj["text"]
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {text!r}")
        return cls(text, float(obj["score"]),
                   scores=tuple((str(k), float(v)) for k, v in scores.items()))

    def to_json(self) -> dict:
        out = {"text": self.text, "score": round(float(self.score), 4)}
        if self.scores:
            out["scores"] = {k: round(float(v), 4) for k, v in self.scores}
        return out
