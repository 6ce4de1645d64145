"""The ``nbest.jsonl`` format: one utterance's N-best list per line, best first.

This module owns it: ``speechlm decode`` writes it with :func:`nbest_line`, and everything
that reads it (rescoring, SLU inputs, the HTTP API) calls :func:`read_nbest_jsonl` and gets
:class:`~speechlm.core.hypothesis.Hypothesis` objects::

    {"utt": "u1", "hyps": [{"text": "ten of clubs", "score": -12.3,
                            "scores": {"am": -10.1, "lm": -2.2}}, ...]}

``score`` is the natural-log score the first pass ranked by; ``scores`` (optional) its parts.

>>> from speechlm.core.hypothesis import Hypothesis
>>> nbest_line("u1", [Hypothesis("a b", -1.5)])
'{"utt": "u1", "hyps": [{"text": "a b", "score": -1.5}]}'
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence

from speechlm.core.hypothesis import Hypothesis

__all__ = ["nbest_line", "read_nbest_jsonl", "write_nbest_jsonl"]


def nbest_line(utt: str, hyps: Sequence[Hypothesis]) -> str:
    """One ``nbest.jsonl`` line (no newline)."""
    return json.dumps({"utt": utt, "hyps": [h.to_json() for h in hyps]}, ensure_ascii=False)


def write_nbest_jsonl(path: str | os.PathLike, nbest: dict[str, Sequence[Hypothesis]]) -> None:
    """Write ``utt -> hypotheses`` in the dict's order."""
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(nbest_line(u, hyps) + "\n" for u, hyps in nbest.items())


def read_nbest_jsonl(path: str | os.PathLike, max_hyps: int | None = None
                     ) -> dict[str, list[Hypothesis]]:
    """``utt -> hypotheses`` (file order, best first), at most ``max_hyps`` each.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a malformed line, a NaN/infinite score, a text spanning lines, a
            duplicate utterance or an empty file; the message names file, line and utterance.
    """
    out: dict[str, list[Hypothesis]] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                utt = str(obj["utt"])
                hyps = [Hypothesis.from_json(h) for h in obj["hyps"]]
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{path}:{n}: not an nbest.jsonl line ({e})") from None
            if utt in out:
                raise ValueError(f"{path}:{n}: duplicate utterance {utt!r}")
            for h in hyps:
                if not math.isfinite(h.score):
                    raise ValueError(f"{path}:{n}: utterance {utt!r}: score {h.score} of "
                                     f"{h.text!r} is not a finite number")
                if "\n" in h.text or "\r" in h.text:
                    raise ValueError(f"{path}:{n}: utterance {utt!r}: a hypothesis text "
                                     "holds a line break")
            out[utt] = hyps[:max_hyps] if max_hyps else hyps
    if not out:
        raise ValueError(f"{path}: no utterances")
    return out
