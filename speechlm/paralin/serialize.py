"""ParalinGPT's serialized multitask format: the prompt a window becomes, the target the model
writes, and the parser that reads a generation back.

Prompt (one line per turn, oldest first; the current turn last)::

    <turn> Monica: you're going out with him? <sentiment> neutral
    <turn> Rachel: yes, tonight!
    <cur_sentiment>

Each context turn may carry its sentiment (``with_context_sentiment``: the paper gives the
history's paralinguistic labels); the current turn's is what the model predicts. Target,
in the paper's order (each conditioned on the previous)::

    <cur_sentiment> positive <resp_sentiment> negative <response> Monica: oh no

The tags are plain text (no new tokens), so the base model's tokenizer and weights stay as
they are and the LoRA adapter learns the format.

Emotion (``with_emotion``, MELD's 7 classes) is an optional extra attribute: each context
turn also shows ``<emotion> X`` and the target starts with the current turn's emotion,
predicted first (``<cur_emotion> joy <cur_sentiment> positive ...``). Single-task response
generation (``task="response"``, a baseline) keeps the prompt and drops the labels from the
target: ``<response> Monica: oh no``.

With speech (``with_speech``) each turn's text is followed by ``<speech>`` and a *slot*, the
placeholder ``{{speech:<utt>}}`` of that utterance's embedding; the model code
(:mod:`speechlm.paralin.model`) tokenizes the text around the slots and puts the projected
embedding (one vector per utterance) where the slot is, so a slot is never seen as text::

    <turn> Monica: you're going out with him? <speech> {{speech:dia3_utt001}} <sentiment> neutral

A prompt longer than the token budget loses its oldest context turns first
(:func:`fit_prompt` counts how often).

>>> target_text("positive", "negative", "Monica: oh no")
'<cur_sentiment> positive <resp_sentiment> negative <response> Monica: oh no'
>>> parse_target(target_text("positive", "negative", "Monica: oh no"))
('positive', 'negative', 'Monica: oh no')
>>> target_text("positive", "negative", "Monica: oh no", emotion="joy")
'<cur_emotion> joy <cur_sentiment> positive <resp_sentiment> negative <response> Monica: oh no'
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from speechlm.paralin.meld import EMOTIONS, SENTIMENTS, Turn, Window

CUR, RESP, RESPONSE, TURN, SENT = ("<cur_sentiment>", "<resp_sentiment>", "<response>",
                                   "<turn>", "<sentiment>")
EMO, CUR_EMO = "<emotion>", "<cur_emotion>"
TASKS = ("multitask", "response")
SPEECH = "<speech>"
_SLOT_RE = re.compile(r"\{\{speech:([A-Za-z0-9_.-]+)\}\}")


@dataclass(frozen=True)
class SpeechSlot:
    """Where one utterance's speech embedding goes in a prompt."""

    utt: str

    def __str__(self) -> str:
        return "{{speech:" + self.utt + "}}"


def split_slots(text: str) -> list[str | SpeechSlot]:
    """A prompt as text pieces and :class:`SpeechSlot` s, in order (empty pieces dropped).

    >>> split_slots("a <speech> {{speech:dia1_utt002}} b")
    ['a <speech> ', SpeechSlot(utt='dia1_utt002'), ' b']
    >>> join_slots(split_slots("a <speech> {{speech:u1}} b")) == "a <speech> {{speech:u1}} b"
    True
    """
    parts: list[str | SpeechSlot] = []
    pos = 0
    for m in _SLOT_RE.finditer(text):
        if m.start() > pos:
            parts.append(text[pos:m.start()])
        parts.append(SpeechSlot(m.group(1)))
        pos = m.end()
    if pos < len(text):
        parts.append(text[pos:])
    return parts


def join_slots(parts: list[str | SpeechSlot]) -> str:
    """The inverse of :func:`split_slots`."""
    return "".join(str(p) for p in parts)


@dataclass(frozen=True)
class FormatConfig:
    """What a prompt shows.

    Args:
        with_context: include the previous turns (False: the current turn only).
        with_context_sentiment: give each context turn's sentiment label.
        with_speaker: prefix each turn with its speaker's name.
        with_speech: follow each turn's text with its speech-embedding slot.
        with_emotion: give each context turn's emotion too, and predict the current
            turn's emotion first (multitask only).
        task: ``multitask`` (labels, then the response) or ``response`` (the response
            only: the single-task baseline).
    """

    with_context: bool = True
    with_context_sentiment: bool = True
    with_speaker: bool = True
    with_speech: bool = False
    with_emotion: bool = False
    task: str = "multitask"

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r}: one of {', '.join(TASKS)}")
        if self.with_emotion and self.task != "multitask":
            raise ValueError("with_emotion: the emotion is a label of the multitask target; "
                             f"task {self.task!r} writes no labels")


def turn_line(turn: Turn, config: FormatConfig, *, label: bool) -> str:
    who = f"{turn.speaker}: " if config.with_speaker else ""
    line = f"{TURN} {who}{turn.text}"
    if config.with_speech:
        line += f" {SPEECH} {SpeechSlot(turn.utt)}"
    if config.with_emotion and label:
        line += f" {EMO} {turn.emotion}"
    return f"{line} {SENT} {turn.sentiment}" if label else line


def prompt_text(window: Window, config: FormatConfig = FormatConfig(), *,
                drop_oldest: int = 0) -> str:
    """The prompt of ``window`` with its ``drop_oldest`` oldest context turns left out."""
    context = window.context[drop_oldest:] if config.with_context else ()
    lines = [turn_line(t, config, label=config.with_context_sentiment) for t in context]
    lines.append(turn_line(window.current, config, label=False))
    return "\n".join(lines) + "\n"


def speech_turns(window: Window, config: FormatConfig = FormatConfig()) -> list[Turn]:
    """The turns whose speech a prompt of ``window`` shows (none without ``with_speech``)."""
    if not config.with_speech:
        return []
    return [*(window.context if config.with_context else ()), window.current]


def response_text(window: Window, config: FormatConfig = FormatConfig()) -> str:
    who = f"{window.response.speaker}: " if config.with_speaker else ""
    return f"{who}{window.response.text}"


def target_text(cur: str, resp: str, response: str, *, emotion: str | None = None) -> str:
    """The multitask target; with ``emotion`` the current turn's emotion comes first."""
    head = f"{CUR_EMO} {emotion} " if emotion is not None else ""
    return f"{head}{CUR} {cur} {RESP} {resp} {RESPONSE} {response}"


def window_target(window: Window, config: FormatConfig = FormatConfig()) -> str:
    """What the model is trained to write after the prompt of ``window``."""
    response = response_text(window, config)
    if config.task == "response":
        return f"{RESPONSE} {response}"
    return target_text(window.current.sentiment, window.response.sentiment, response,
                       emotion=window.current.emotion if config.with_emotion else None)


def parse_emotion(text: str) -> str | None:
    """The current emotion of a generation (None: missing or not one of the 7)."""
    if CUR_EMO not in text:
        return None
    words = text.split(CUR_EMO, 1)[1].split()
    return words[0] if words and words[0] in EMOTIONS else None


def parse_target(text: str) -> tuple[str | None, str | None, str]:
    """``(current sentiment, response sentiment, response)`` from a generation; a label
    that is missing or not a sentiment is None (counted as wrong by the scorer)."""
    def label_after(tag: str, rest: str) -> str | None:
        if tag not in rest:
            return None
        words = rest.split(tag, 1)[1].split()
        return words[0] if words and words[0] in SENTIMENTS else None

    cur = label_after(CUR, text)
    resp = label_after(RESP, text)
    response = text.split(RESPONSE, 1)[1].strip() if RESPONSE in text else ""
    return cur, resp, response


def fit_prompt(window: Window, config: FormatConfig, count_tokens: Callable[[str], int],
               budget: int) -> tuple[str, int]:
    """The prompt within ``budget`` tokens, dropping the oldest context turns first;
    returns ``(prompt, turns dropped)``. The current turn is never dropped (a prompt over
    budget without context is returned as is: the caller's tokenizer cuts it)."""
    n = len(window.context) if config.with_context else 0
    for drop in range(n + 1):
        text = prompt_text(window, config, drop_oldest=drop)
        if count_tokens(text) <= budget:
            return text, drop
    return text, n
