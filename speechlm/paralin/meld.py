"""MELD-form dialogue CSVs and the dialogue windows ParalinGPT learns from.

A MELD CSV has one utterance per row with the columns ``Utterance, Speaker, Emotion,
Sentiment, Dialogue_ID, Utterance_ID`` (others are kept but unused). Rows are grouped into
dialogues by ``Dialogue_ID`` and ordered by ``Utterance_ID``; within a dialogue the ids must
be unique and increasing in file order (a shuffled or merged file is refused, not
re-sorted silently: the turn order is the data). Every problem names the file, the CSV row
(1-based, the header being row 1) and the field.

A :class:`Window` is what one training example sees: up to ``context`` previous turns, the
current turn, and the response (the next turn of the same dialogue), as in ParalinGPT
(Lin et al. 2023, arXiv 2312.15316).

>>> t = [Turn("d0", 0, "A", "hi", "joy", "positive"), Turn("d0", 1, "B", "hey", "neutral",
...      "neutral"), Turn("d0", 2, "A", "bye", "sadness", "negative")]
>>> [(len(w.context), w.current.text, w.response.text) for w in build_windows([t], 1)]
[(0, 'hi', 'hey'), (1, 'hey', 'bye')]
"""
from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass

SENTIMENTS = ("negative", "neutral", "positive")
EMOTIONS = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
_REQUIRED = ("Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID")


@dataclass(frozen=True)
class Turn:
    """One utterance of a dialogue.

    Args:
        dialogue: dialogue id (``Dialogue_ID``).
        index: position in the dialogue (``Utterance_ID``).
        speaker: who speaks.
        text: what is said.
        emotion: one of :data:`EMOTIONS`.
        sentiment: one of :data:`SENTIMENTS`.
    """

    dialogue: str
    index: int
    speaker: str
    text: str
    emotion: str
    sentiment: str

    @property
    def utt(self) -> str:
        """Kaldi-style utterance id: ``dia<D>_utt<I>`` (sortable, no spaces)."""
        return f"dia{self.dialogue}_utt{self.index:03d}"


@dataclass(frozen=True)
class Window:
    """Previous turns (oldest first), the current turn and the response to predict."""

    context: tuple[Turn, ...]
    current: Turn
    response: Turn


class MeldFormatError(ValueError):
    """A MELD-form CSV that cannot be read (the message names the file, row and field)."""


def read_meld_csv(path: str | os.PathLike) -> list[list[Turn]]:
    """The dialogues of a MELD-form CSV, each a list of turns in order.

    Raises:
        MeldFormatError: a missing column, empty text, an unknown sentiment or emotion, a
            non-integer or repeated/decreasing ``Utterance_ID`` within a dialogue, a
            dialogue split across the file, text that is not UTF-8.
    """
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in _REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise MeldFormatError(f"{path}: missing column(s) {', '.join(missing)} "
                                      f"(header: {reader.fieldnames})")
            rows = list(enumerate(reader, start=2))
    except UnicodeDecodeError as e:
        raise MeldFormatError(f"{path}: not UTF-8 text (byte {e.start}): {e.reason}") from None
    dialogues: dict[str, list[Turn]] = {}
    closed: set[str] = set()
    last = None
    for row_no, row in rows:
        where = f"{path}: row {row_no}"
        text = " ".join((row.get("Utterance") or "").split())
        if not text:
            raise MeldFormatError(f"{where}: empty Utterance")
        sentiment = (row.get("Sentiment") or "").strip().lower()
        if sentiment not in SENTIMENTS:
            raise MeldFormatError(f"{where}: Sentiment {row.get('Sentiment')!r} is not one of "
                                  f"{', '.join(SENTIMENTS)}")
        emotion = (row.get("Emotion") or "").strip().lower()
        if emotion not in EMOTIONS:
            raise MeldFormatError(f"{where}: Emotion {row.get('Emotion')!r} is not one of "
                                  f"{', '.join(EMOTIONS)}")
        dialogue = (row.get("Dialogue_ID") or "").strip()
        try:
            index = int((row.get("Utterance_ID") or "").strip())
        except ValueError:
            raise MeldFormatError(f"{where}: Utterance_ID {row.get('Utterance_ID')!r} is not "
                                  "an integer") from None
        if not dialogue:
            raise MeldFormatError(f"{where}: empty Dialogue_ID")
        if dialogue != last:
            if dialogue in closed:
                raise MeldFormatError(f"{where}: dialogue {dialogue} continues after other "
                                      "dialogues (rows of a dialogue must be together)")
            if last is not None:
                closed.add(last)
            last = dialogue
        turns = dialogues.setdefault(dialogue, [])
        if turns and index <= turns[-1].index:
            raise MeldFormatError(f"{where}: dialogue {dialogue}: Utterance_ID {index} after "
                                  f"{turns[-1].index} (turns must be in order, no repeats)")
        speaker = " ".join((row.get("Speaker") or "").split()) or "unknown"
        turns.append(Turn(dialogue, index, speaker, text, emotion, sentiment))
    if not dialogues:
        raise MeldFormatError(f"{path}: no rows")
    return list(dialogues.values())


def build_windows(dialogues: Sequence[Sequence[Turn]], context: int) -> list[Window]:
    """Every (current, response) pair of consecutive turns with up to ``context`` turns
    before the current one (fewer at a dialogue's start)."""
    if context < 0:
        raise ValueError(f"context must be >= 0, got {context}")
    out = []
    for turns in dialogues:
        for i in range(len(turns) - 1):
            out.append(Window(tuple(turns[max(0, i - context):i]), turns[i], turns[i + 1]))
    return out
