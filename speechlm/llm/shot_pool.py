"""A few-shot pool of spoken sentences, its shots shown as text or as their first pass's output.

In-context SLU from ASR output usually shows the shots as clean text and the query as a
1-best, N-best list or WCN: the LM never sees, in its examples, how recognition errors look
or how a label follows from a confusion network. A **spoken pool** is a Kaldi data dir of
training sentences (``text`` + ``utt2intent``) with the first pass's decode of their
speech; each shot can then be shown in the query's own form (``matched`` shots, as a
fine-tuned model would be trained on ASR output), while shots are still chosen by their
reference text, so text-shown and matched runs share every shot and differ only in how
the shots are written.

``shot_input``: ``text`` (the reference), ``same`` (the query's kind; a marginalized query,
classified one hypothesis at a time, sees its shots' 1-best), or a decode kind (``1best``,
``nbest``, ``wcn``, ``oracle``).
"""
from __future__ import annotations

from pathlib import Path

from speechlm.data.kaldi_dir import c_sorted, read_table
from speechlm.llm.icl import Example
from speechlm.llm.serialize import (
    INPUT_ALIASES,
    INPUT_KINDS,
    MARGINAL_KINDS,
    SerializeConfig,
    input_kind,
    load_input_variants,
    read_utt2intent,
)

SHOT_INPUTS = ("text", "same", *(k for k in INPUT_KINDS if k not in MARGINAL_KINDS),
               *INPUT_ALIASES)


def shot_kind(shot_input: str, query_kind: str) -> str:
    """The input kind shots are shown as, for a query of ``query_kind``.

    >>> shot_kind("same", "wcn"), shot_kind("same", "wcn_marg"), shot_kind("1best", "wcn")
    ('wcn', 'onebest', 'onebest')
    """
    if shot_input not in SHOT_INPUTS:
        raise ValueError(f"shot input must be one of {SHOT_INPUTS}, got {shot_input!r}")
    if shot_input != "same":
        return input_kind(shot_input)
    kind = input_kind(query_kind)
    return "onebest" if kind in MARGINAL_KINDS else kind


def read_spoken_pool(data_dir: str | Path) -> list[Example]:
    """Every utterance of ``data_dir`` as a few-shot example: id = utterance, its ``text``
    (the reference) and its ``utt2intent`` label, ``LC_ALL=C`` sorted.

    Raises:
        FileNotFoundError: ``text`` or ``utt2intent`` missing.
        ValueError: an utterance without a label or with an empty reference (named), or an
            empty dir.
    """
    data_dir = Path(data_dir)
    if not (data_dir / "text").is_file():
        raise FileNotFoundError(f"{data_dir}/text does not exist (a spoken pool is a data dir)")
    intents = read_utt2intent(data_dir / "utt2intent")
    texts = {key: " ".join(value.split())
             for _, key, value in read_table(data_dir / "text", value_required=False)}
    unlabelled = [u for u in texts if u not in intents]
    if unlabelled:
        raise ValueError(f"{data_dir}/utt2intent: no intent for {len(unlabelled)} utterance(s) "
                         f"of {data_dir}/text, e.g. {unlabelled[0]}")
    empty = [u for u, t in texts.items() if not t]
    if empty:
        raise ValueError(f"{data_dir}/text: utterance {empty[0]} has an empty reference "
                         f"({len(empty)} in all): a shot must show what was said")
    if not texts:
        raise ValueError(f"{data_dir}/text holds no utterances")
    return [Example(u, texts[u], intents[u]) for u in c_sorted(texts)]


def shown_inputs(kind: str, serialize: SerializeConfig, data_dir: str | Path,
                 decode_dir: str | Path | None) -> dict[str, str]:
    """What each utterance of the spoken pool shows as a shot of ``kind``: its reference
    (``text``) or its serialized decode (the longest serialization: a shot that does not
    fit is dropped whole by the prompt fitter); an utterance without a decode output shows
    the empty hypothesis, as a query would."""
    kind = input_kind(kind)
    if kind != "text" and decode_dir is None:
        raise ValueError(f"shots shown as {kind!r} need the pool's decode dir")
    variants = load_input_variants(kind, serialize, decode_dir=decode_dir, data_dir=data_dir)
    return {utt: v[0] for utt, v in variants.items()}
