"""Extractive spoken QA over ASR output: the second task of ICL over WCNs (arXiv 2401.02921).

No spoken-QA corpus is available here, so the set is **built from slot annotations**:
SLURP's ``sentence_annotation`` marks spans (``wake me up at [time : five am]``), and SNIPS-style
rows carry them as a list (``"spans": [["city", "paris"], ...]``, the text of the chunks that
have an ``entity``, ``speechlm.data.snips``); every
slot type that occurs once in a sentence gives one question about that utterance, written
from a template per slot type (``QUESTIONS``; other types get "What <type> is mentioned?"),
and its answer is the span's words. A slot type that occurs twice in a sentence with
different values gives no question (it would have two answers) and is counted.

The LLM reads the utterance as text, 1-best, N-best or WCN (``speechlm.llm.serialize``),
a few demonstrations (reference text, same slot type first) and the question, and writes
the answer greedily through the runtime (``LLM.generate``, one line). Scoring is SQuAD's:
exact match and token F1 after lower-casing and removing punctuation and articles.

>>> parse_annotation("wake me up at [time : five am] [date : tomorrow]")
[('time', 'five am'), ('date', 'tomorrow')]
>>> [(i.slot, i.question, i.answer) for i in build_items([("u1", [("timeRange", "Tonight")])])[0]]
[('timeRange', 'What time is mentioned?', 'tonight')]
>>> round(token_f1("five am", "at five am"), 3), exact_match("The five AM", "five am")
(0.8, True)
"""
from __future__ import annotations

import json
import random
import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from speechlm.core.errors import InputError

__all__ = ["QUESTIONS", "QAItem", "answer_questions", "build_items", "build_prompt",
           "exact_match", "parse_annotation", "read_annotations", "score", "token_f1"]

QUESTIONS = {
    "time": "What time is mentioned?",
    "date": "What day or date is mentioned?",
    "timeofday": "What time of day is mentioned?",
    "place_name": "Which place is mentioned?",
    "person": "Which person is mentioned?",
    "relation": "Which relative or contact is mentioned?",
    "event_name": "Which event is mentioned?",
    "weather_descriptor": "Which weather condition is asked about?",
    "house_place": "Which room of the house is mentioned?",
    "device_type": "Which device is mentioned?",
    "artist_name": "Which artist is mentioned?",
    "song_name": "Which song is mentioned?",
    "media_type": "Which kind of media is mentioned?",
    "business_name": "Which business is mentioned?",
    "food_type": "Which food is mentioned?",
    "currency_name": "Which currency is mentioned?",
    "news_topic": "Which news topic is asked about?",
    "list_name": "Which list is mentioned?",
    "color_type": "Which color is mentioned?",
    "playlist_name": "Which playlist is mentioned?",
    # SNIPS slot types (SNIPS also has movie_name and movie_type: SLURP's default wording)
    "timeRange": "What time is mentioned?",
    "playlist": "Which playlist is mentioned?",
    "artist": "Which artist is mentioned?",
    "music_item": "Which kind of music item is mentioned?",
    "city": "Which city is mentioned?",
    "state": "Which state is mentioned?",
    "country": "Which country is mentioned?",
    "restaurant_type": "Which kind of restaurant is mentioned?",
    "party_size_number": "For how many people?",
    "rating_value": "Which rating is given?",
    "best_rating": "What is the best rating mentioned?",
    "object_name": "Which title is mentioned?",
    "object_type": "Which kind of thing is mentioned?",
}
INSTRUCTION = ("Answer each question with the words of the voice assistant request that "
               "answer it. Requests may be speech recognizer output: hypotheses split by "
               "'|', word alternatives by '/' with their probabilities.")
_SPAN = re.compile(r"\[\s*([^\]:]+?)\s*:\s*([^\]]*?)\s*\]")


@dataclass(frozen=True)
class QAItem:
    """A question about one utterance and its answer (the slot value's words)."""

    utt: str
    slot: str
    question: str
    answer: str


def question_for(slot: str) -> str:
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", slot).replace("_", " ").lower()
    return QUESTIONS.get(slot, f"What {words} is mentioned?")


def parse_annotation(annotated: str) -> list[tuple[str, str]]:
    """``(slot type, value)`` of each ``[type : value]`` span, in order."""
    return [(m.group(1).strip(), " ".join(m.group(2).split())) for m in _SPAN.finditer(annotated)]


def _normalize_value(text: str) -> str:
    text = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " "))
    return " ".join(text.split())


Annotation = str | Sequence[tuple[str, str]]


def build_items(annotations: Iterable[tuple[str, Annotation]]) -> tuple[list[QAItem], Counter]:
    """QA items of ``(utterance id, annotation)`` pairs; an annotation is a SLURP annotated
    sentence or the ``(slot type, value)`` spans themselves (SNIPS).

    Returns:
        (items in input order, counts: ``items``, ``no_slot`` (sentences without a span),
        ``ambiguous`` (slot types seen twice with different values), ``empty_value``).
    """
    items, counts = [], Counter()
    for utt, annotated in annotations:
        spans = parse_annotation(annotated) if isinstance(annotated, str) else list(annotated)
        if not spans:
            counts["no_slot"] += 1
            continue
        values: dict[str, set[str]] = {}
        for slot, value in spans:
            values.setdefault(slot, set()).add(_normalize_value(value))
        for slot, vals in values.items():
            if len(vals) > 1:
                counts["ambiguous"] += 1
                continue
            (value,) = vals
            if not value:
                counts["empty_value"] += 1
                continue
            items.append(QAItem(utt, slot, question_for(slot), value))
    counts["items"] = len(items)
    return items, counts


def read_annotations(jsonl: str | Path, prefix: str = "") -> dict[str, Annotation]:
    """``prefix + id`` -> annotation of each line of a JSONL file.

    A line is SLURP's (``slurp_id``, ``sentence_annotation``: the annotated sentence) or
    SNIPS-style (``id``, ``spans``: ``[[slot type, value], ...]``, as the icl1 recipe writes
    SNIPS sets). Lines with neither (a set labelled with intents only) are left out: their
    utterances get no question.

    Raises:
        InputError: a line that is not a JSON object, an annotation that is not a string,
            or spans that are not pairs of strings (file and line named).
    """
    path, out = Path(jsonl), {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                annotated, spans = obj.get("sentence_annotation"), obj.get("spans")
            except (json.JSONDecodeError, AttributeError) as e:
                raise InputError(f"{path}:{n}: not a SLURP JSON line or a row with 'spans' "
                                 f"({e})") from None
            key = f"{prefix}{obj.get('slurp_id', obj.get('id', n))}"
            if annotated is not None:
                if not isinstance(annotated, str):
                    raise InputError(f"{path}:{n}: sentence_annotation is not a string")
                out[key] = annotated
            elif spans is not None:
                if not isinstance(spans, list) or not all(
                        isinstance(x, list | tuple) and len(x) == 2
                        and all(isinstance(y, str) for y in x) for x in spans):
                    raise InputError(f"{path}:{n}: spans is not a list of [slot type, value] "
                                     "string pairs")
                out[key] = [(slot, value) for slot, value in spans]
    return out


# --------------------------------------------------------------------------- scoring
def _answer_tokens(text: str) -> list[str]:
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation) - {"'"})
    return [w for w in text.split() if w not in ("a", "an", "the")]


def exact_match(pred: str, gold: str) -> bool:
    return _answer_tokens(pred) == _answer_tokens(gold)


def token_f1(pred: str, gold: str) -> float:
    p, g = _answer_tokens(pred), _answer_tokens(gold)
    if not p or not g:
        return float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def score(items: Sequence[QAItem], predictions: Sequence[str]) -> dict:
    """Exact match and F1 in percent over ``items``."""
    if len(items) != len(predictions):
        raise ValueError(f"{len(items)} items but {len(predictions)} predictions")
    n = max(len(items), 1)
    return {"questions": len(items),
            "exact_match": 100 * sum(exact_match(p, i.answer)
                                     for i, p in zip(items, predictions, strict=True)) / n,
            "f1": 100 * sum(token_f1(p, i.answer)
                            for i, p in zip(items, predictions, strict=True)) / n}


# --------------------------------------------------------------------------- prompting
def _block(context: str, question: str, answer: str | None) -> str:
    return f"Request: {context}\nQuestion: {question}\nAnswer:" + (
        f" {answer}\n" if answer is not None else "")


def choose_shots(item: QAItem, pool: Sequence[QAItem], k: int, seed: int = 0
                 ) -> list[QAItem]:
    """``k`` demonstrations from ``pool`` (never the item's own utterance): those with the
    same slot type first (they show the answer's form), the rest at random; seeded per
    utterance so a run is reproducible and every input kind gets the same shots."""
    rng = random.Random(f"{seed}:{item.utt}:{item.slot}")
    same = [s for s in pool if s.slot == item.slot and s.utt != item.utt]
    other = [s for s in pool if s.slot != item.slot and s.utt != item.utt]
    rng.shuffle(same)
    rng.shuffle(other)
    return (same + other)[:k]


def build_prompt(item: QAItem, context: str, shots: Sequence[QAItem],
                 shot_text: dict[str, str], instruction: str = INSTRUCTION) -> str:
    """Instruction, demonstrations (their reference text), then the query."""
    demos = "".join(_block(shot_text[s.utt], s.question, s.answer) + "\n" for s in shots)
    return f"{instruction}\n\n{demos}{_block(context, item.question, None)}"


def vote_answers(answers: Sequence[tuple[str, float]]) -> str:
    """The answer with the largest total weight; answers equal under SQuAD normalization
    pool their weights; a tie goes to the one seen first (the likelier hypothesis's).

    >>> vote_answers([("seven am", 0.4), ("eleven", 0.35), ("Seven AM.", 0.25)])
    'seven am'
    """
    totals: dict[tuple[str, ...], float] = {}
    first: dict[tuple[str, ...], str] = {}
    for answer, w in answers:
        key = tuple(_answer_tokens(answer))
        totals[key] = totals.get(key, 0.0) + w
        first.setdefault(key, answer)
    if not totals:
        return ""
    return first[max(totals, key=totals.__getitem__)]  # max keeps the first of equal totals


def answer_questions(llm, items: Sequence[QAItem],
                     contexts: dict[str, str] | dict[str, list[tuple[str, float]]],
                     pool: Sequence[QAItem], pool_text: dict[str, str], *, shots: int = 4,
                     max_tokens: int = 12, seed: int = 0, batch_size: int = 8,
                     progress: bool = True) -> tuple[list[str], Counter]:
    """Greedy answers of ``llm`` (a runtime ``LLM``) to ``items`` over ``contexts``.

    A context is one line, or weighted hypotheses ``[(text, weight)]``
    (``load_weighted_hypotheses``): then the question is asked about each hypothesis, with
    the same demonstrations, and the answers are voted (:func:`vote_answers`). An utterance
    missing from ``contexts`` (no hypothesis: silence) is asked about the empty request,
    never skipped. A prompt longer than the model's context drops demonstrations first; a
    generation that fails answers "" and is counted.

    Returns:
        (answers, counts: ``shots_dropped`` (prompts), ``empty_context``, ``failed``).
    """
    from tqdm import tqdm

    from speechlm.runtime import SamplingParams

    counts: Counter = Counter()
    limit = int(getattr(llm, "max_length", 2048)) - max_tokens - 1
    prompts, owners = [], []  # owners[j] = (item index, hypothesis weight) of prompts[j]
    for i, item in enumerate(items):
        context = contexts.get(item.utt, "")
        hyps = [(context, 1.0)] if isinstance(context, str) else list(context) or [("", 1.0)]
        if not any(text.strip() for text, _ in hyps):
            counts["empty_context"] += 1
        chosen = choose_shots(item, pool, shots, seed)
        for text, weight in hyps:
            demos = chosen
            while True:
                prompt = build_prompt(item, text, demos, pool_text)
                if len(llm.tokenizer(prompt)["input_ids"]) <= limit or not demos:
                    break
                demos = demos[:-1]
                counts["shots_dropped"] += 1
            prompts.append(prompt)
            owners.append((i, weight))
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, stop=("\n",))
    out: list[str] = []
    for s in tqdm(range(0, len(prompts), batch_size), desc="spoken QA", disable=not progress):
        batch = prompts[s:s + batch_size]
        try:
            out += [c.text.strip().split("\n")[0] for c in llm.generate(batch, params)]
        except (RuntimeError, ValueError) as e:  # counted, the run goes on
            print(f"spoken QA: generation failed for {len(batch)} question(s): {e}")
            counts["failed"] += len(batch)
            out += [""] * len(batch)
    per_item: list[list[tuple[str, float]]] = [[] for _ in items]
    for (i, weight), answer in zip(owners, out, strict=True):
        per_item[i].append((answer, weight))
    return [vote_answers(a) for a in per_item], counts


def items_jsonl(items: Sequence[QAItem], predictions: Sequence[str] | None = None) -> str:
    rows = []
    for k, item in enumerate(items):
        row = asdict(item)
        if predictions is not None:
            row.update(prediction=predictions[k], em=exact_match(predictions[k], item.answer),
                       f1=round(token_f1(predictions[k], item.answer), 4))
        rows.append(json.dumps(row))
    return "".join(r + "\n" for r in rows)
