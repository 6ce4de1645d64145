"""Evaluation sets built here, and their scoring by a unit LM's likelihood.

Three kinds of minimal pairs, each spoken by the same voice on both sides:

* ``lexical`` (sWUGGY-style): a real word vs a pronounceable non-word made from it by
  swapping one vowel letter for another, kept only when the result is not an English word
  (not in the given lexicon). Words are taken from the training text's vocabulary.
* ``syntactic`` (sBLIMP-style): grammatical vs ungrammatical sentences from templates
  written here (``TEMPLATES``: agreement, auxiliaries, pronoun case, word order,
  determiner number); no sentence comes from BLiMP itself.
* ``cloze`` (StoryCloze-style): a MELD dialogue turn as context, the true next turn vs a
  turn from another dialogue of similar length (within 30% of the words).

Scoring (``pair_correct``): lexical and syntactic compare the summed unit log-probability
of the two utterances (as sWUGGY / sBLIMP do); cloze compares the candidate's pointwise
mutual information with the context, ``log p(cand | ctx) - log p(cand)``, because the
two candidates differ in length and a plain sum would mostly pick the shorter one.

>>> items = syntactic_pairs(4, seed=0)
>>> [(i.kind, i.good != i.bad) for i in items][:2]
[('syntactic', True), ('syntactic', True)]
"""
from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from speechlm.core.errors import InputError

__all__ = ["EvalItem", "TEMPLATES", "cloze_pairs", "lexical_pairs", "read_items",
           "syntactic_pairs", "write_items"]

KINDS = ("lexical", "syntactic", "cloze")
VOWELS = "aeiou"


@dataclass(frozen=True)
class EvalItem:
    """One minimal pair: ``good`` should score above ``bad`` (after ``context`` for cloze).

    >>> EvalItem("syn_0001", "syntactic", "the man walks", "the man walk").context
    ''
    """

    id: str
    kind: str
    good: str
    bad: str
    context: str = ""
    tag: str = ""  # template or source, for per-phenomenon breakdowns

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"item {self.id}: kind {self.kind!r} is not one of {KINDS}")
        if not self.good.strip() or not self.bad.strip() or self.good == self.bad:
            raise ValueError(f"item {self.id}: good and bad must be different non-empty texts")
        if (self.kind == "cloze") != bool(self.context.strip()):
            raise ValueError(f"item {self.id}: a cloze item (and only one) has a context")

    def texts(self) -> dict[str, str]:
        """Role -> text (``good``, ``bad`` and, for cloze, ``ctx``)."""
        out = {"good": self.good, "bad": self.bad}
        if self.context:
            out["ctx"] = self.context
        return out


def write_items(path: str | Path, items: Sequence[EvalItem]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for it in items:
            f.write(json.dumps(asdict(it)) + "\n")


def read_items(path: str | Path) -> list[EvalItem]:
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(EvalItem(**json.loads(line)))
            except (TypeError, ValueError) as e:
                raise InputError(f"{path}:{n}: not an eval item ({e})") from None
    return out


# --------------------------------------------------------------------------- lexical
def _nonwords(word: str, lexicon: set[str]) -> list[str]:
    out = []
    for i, ch in enumerate(word):
        if ch in VOWELS:
            for v in VOWELS:
                cand = word[:i] + v + word[i + 1:]
                if v != ch and cand not in lexicon:
                    out.append(cand)
    return out


def lexical_pairs(corpus: Sequence[str], lexicon: set[str], n: int, *, seed: int = 0,
                  min_len: int = 4, max_len: int = 9) -> list[EvalItem]:
    """``n`` word / non-word pairs from the frequent words of ``corpus``.

    Args:
        corpus: training sentences (words are taken from them, most frequent first).
        lexicon: known English words; a candidate non-word found there is skipped.
    """
    counts = Counter(w for s in corpus for w in re.findall(r"[a-z]+", s.lower()))
    rng = random.Random(seed)
    items = []
    for w, _ in counts.most_common():
        if not min_len <= len(w) <= max_len:
            continue
        cands = _nonwords(w, lexicon | set(counts))
        if not cands:
            continue
        items.append(EvalItem(f"lex_{len(items):04d}", "lexical", w, rng.choice(cands)))
        if len(items) == n:
            break
    if len(items) < n:
        raise InputError(f"only {len(items)} lexical pairs from the corpus, {n} asked")
    return items


# --------------------------------------------------------------------------- syntactic
_NOUNS = [("man", "men"), ("woman", "women"), ("friend", "friends"), ("light", "lights"),
          ("alarm", "alarms"), ("song", "songs"), ("meeting", "meetings"), ("car", "cars"),
          ("dog", "dogs"), ("teacher", "teachers"), ("radio", "radios"), ("lamp", "lamps")]
_VERBS = [("play", "plays", "playing"), ("stop", "stops", "stopping"),
          ("start", "starts", "starting"), ("work", "works", "working"),
          ("call", "calls", "calling"), ("need", "needs", "needing"),
          ("like", "likes", "liking"), ("want", "wants", "wanting")]
_OBJECTS = ["music", "the news", "a song", "the radio", "the game", "coffee", "the lights"]

# name -> builder(rng) -> (good, bad); each template changes one thing.
TEMPLATES = {
    "agreement_singular": lambda r, n, v, o: (f"the {n[0]} {v[1]} {o}", f"the {n[0]} {v[0]} {o}"),
    "agreement_plural": lambda r, n, v, o: (f"the {n[1]} {v[0]} {o}", f"the {n[1]} {v[1]} {o}"),
    "auxiliary": lambda r, n, v, o: (f"the {n[0]} is {v[2]} {o}", f"the {n[0]} is {v[0]} {o}"),
    "pronoun_case": lambda r, n, v, o: (f"she {v[1]} {o} with him", f"her {v[1]} {o} with he"),
    "word_order": lambda r, n, v, o: (f"i {v[0]} {o} every day", f"i {o} {v[0]} every day"),
    "determiner_number": lambda r, n, v, o: (f"these {n[1]} {v[0]} {o}",
                                             f"this {n[1]} {v[0]} {o}"),
}


def syntactic_pairs(n: int, *, seed: int = 0) -> list[EvalItem]:
    """``n`` distinct grammatical / ungrammatical pairs, cycling over ``TEMPLATES``."""
    rng = random.Random(seed)
    names = sorted(TEMPLATES)
    items, seen = [], set()
    for attempt in range(100 * n):
        name = names[attempt % len(names)]
        good, bad = TEMPLATES[name](rng, rng.choice(_NOUNS), rng.choice(_VERBS),
                                    rng.choice(_OBJECTS))
        if (good, bad) in seen:
            continue
        seen.add((good, bad))
        items.append(EvalItem(f"syn_{len(items):04d}", "syntactic", good, bad, tag=name))
        if len(items) == n:
            return items
    raise InputError(f"the templates give only {len(items)} distinct pairs, {n} asked")


# --------------------------------------------------------------------------- cloze
def clean_turn(text: str) -> str:
    """Lower-case words and apostrophes: what the synthesizer and recognizer both handle."""
    text = text.replace("\u2019", "'").replace("\u0092", "'").lower()
    return " ".join(re.findall(r"[a-z]+(?:'[a-z]+)?", text))


def cloze_pairs(dialogues: Sequence[Sequence[str]], n: int, *, seed: int = 0,
                min_words: int = 3, max_words: int = 15) -> list[EvalItem]:
    """``n`` (context, true next turn, other dialogue's turn) items from dialogues of turns.

    The distractor comes from another dialogue and has within 30% of the true turn's
    words; contexts and turns are cleaned with ``clean_turn`` and kept to
    ``min_words..max_words`` words.
    """
    rng = random.Random(seed)
    turns = [[clean_turn(t) for t in d] for d in dialogues]
    ok = [(d, i) for d, ts in enumerate(turns) for i in range(len(ts) - 1)
          if all(min_words <= len(ts[j].split()) <= max_words for j in (i, i + 1))]
    rng.shuffle(ok)
    pool = [(d, t) for d, ts in enumerate(turns) for t in ts
            if min_words <= len(t.split()) <= max_words]
    items, used = [], set()
    for d, i in ok:
        if d in used:
            continue  # one item per dialogue: items stay independent
        ctx, true = turns[d][i], turns[d][i + 1]
        nw = len(true.split())
        cands = [t for dd, t in pool if dd != d and t != true
                 and abs(len(t.split()) - nw) <= 0.3 * nw]
        if not cands or ctx == true:
            continue
        used.add(d)
        items.append(EvalItem(f"clz_{len(items):04d}", "cloze", true, rng.choice(cands),
                              context=ctx))
        if len(items) == n:
            return items
    raise InputError(f"only {len(items)} cloze items from {len(dialogues)} dialogues, {n} asked")


# --------------------------------------------------------------------------- scoring
def item_scores(lm, item: EvalItem, units: dict[str, str]) -> tuple[float, float]:
    """(good score, bad score) of one item under ``lm`` (a ``LanguageModel`` over units).

    Args:
        units: role -> unit text (``units_to_text``) of this item's utterances.
    """
    return score_items(lm, [item], [units])[0]


def score_items(lm, items: Sequence[EvalItem], units: Sequence[dict[str, str]],
                batch_size: int = 32) -> list[tuple[float, float]]:
    """``item_scores`` of many items: every plain score in one batched call, then one
    call per cloze context (its KV cache is shared by the two candidates)."""
    texts = [u[role] for u in units for role in ("good", "bad")]
    plain = lm.score(texts, append_eos=True, batch_size=batch_size)
    out = []
    for k, (item, u) in enumerate(zip(items, units, strict=True)):
        good, bad = plain[2 * k], plain[2 * k + 1]
        if item.kind == "cloze":
            cond = lm.score([u["good"], u["bad"]], prefix=u["ctx"], append_eos=True)
            good, bad = cond[0] - good, cond[1] - bad
        out.append((good, bad))
    return out


def pair_correct(good: float, bad: float) -> float:
    """1 when good wins, 0.5 on a tie, 0 otherwise."""
    return 1.0 if good > bad else 0.5 if good == bad else 0.0
