"""Prediction dirs for the tests of icl1's analysis reports: ten utterances, two intents."""
import json
from pathlib import Path

REF = {f"u{i}": "alarm_set" if i % 2 else "play_music" for i in range(10)}


def write_pred(d: Path, right: int, **accuracy) -> None:
    """A prediction dir whose first ``right`` utterances are classified right (``accuracy``:
    more fields of its accuracy.json)."""
    d.mkdir(parents=True)
    utts = sorted(REF)
    hyp = {u: REF[u] if k < right else "wrong_label" for k, u in enumerate(utts)}
    d.joinpath("utt2intent").write_text("".join(f"{u} {hyp[u]}\n" for u in utts))
    d.joinpath("accuracy.json").write_text(json.dumps({"accuracy": right / len(REF),
                                                       **accuracy}))


def write_refs(data: Path, sets_voices: list[str]) -> None:
    """``data/<set>_<voice>/utt2intent`` of REF for each name."""
    for name in sets_voices:
        (data / name).mkdir(parents=True, exist_ok=True)
        (data / name / "utt2intent").write_text("".join(f"{u} {v}\n" for u, v in REF.items()))
