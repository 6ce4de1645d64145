#!/usr/bin/env python3
"""Whisper second pass: rescore the first pass's N-best with Whisper, weight tuned on dev.

For every utterance of every set, the candidates are the first pass's N-best texts
(``EXP/decode_lattice_<set>/nbest.jsonl``, stage 7's vocabulary-constrained lattice N-best,
or with ``--first-pass beam`` stage 6's ``EXP/decode_<set>/nbest.jsonl``) plus, for a
closed-vocabulary task, every distinct training transcript (``--closed-set-from``: used
when it holds at most ``--max-closed-set`` distinct texts, as FSDD's ten digit words
do). Each candidate is scored by Whisper, teacher-forced (``speechlm.asr.whisper_score``;
audio padded to ``--window-s``, the closed set given as Whisper's previous-text prompt),
and the two scores are interpolated::

    score = (1 - w) * first_pass + w * whisper

A candidate that one system did not score gets that system's lowest score for the
utterance minus ``floor`` (so ``w = 0`` is the first pass). ``w`` and ``floor`` are chosen
on the dev set (lowest WER; ties go to the smaller ``w``, i.e. closer to the first pass) and
applied unchanged to every set.

Outputs: ``EXP/whisper_pass/<set>/scores.jsonl`` (every candidate's Whisper score;
resumable: utterances already scored with the same settings.json are kept),
``EXP/whisper_pass/tuning.tsv`` (dev WER per setting), ``EXP/whisper_pass/chosen.json``,
and ``EXP/decode_whisper_<set>/{text,nbest.jsonl}``.

    python local/whisper_pass.py --exp exp/asr_train_asr --sets dev test \
        --dirs data/dev data/test --closed-set-from data/train/text --nj 2
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from speechlm.core.hypothesis import Hypothesis
from speechlm.core.nbest_jsonl import nbest_line, read_nbest_jsonl
from speechlm.core.wer import ErrorStats, read_kaldi_text

WEIGHTS = [round(0.1 * i, 1) for i in range(11)]
FLOORS = [2.0, 5.0, 10.0]
_SCORER = None  # one per worker process


def closed_set(text_file: Path, limit: int) -> list[str]:
    """Distinct transcripts of ``text_file`` when there are at most ``limit``, else []."""
    texts = sorted({" ".join(w) for w in read_kaldi_text(str(text_file)).values()})
    return texts if len(texts) <= limit else []


def vocabulary_prompt(texts: list[str]) -> str:
    """The closed set as Whisper would write a list of it: "Zero, one, ..., nine." """
    joined = ", ".join(texts)
    return f"{joined[:1].upper()}{joined[1:]}." if joined else ""


def _init(settings: dict) -> None:
    global _SCORER
    from speechlm.asr.whisper_score import WhisperScorer

    _SCORER = WhisperScorer(settings["model"], window_s=settings["window_s"],
                            prompt=settings["prompt"] or None)


def _score_chunk(job: tuple[str, list[tuple[str, list[str]]]]) -> list[dict]:
    """Whisper scores of each utterance's candidates (runs in a worker)."""
    from speechlm.data.features import iter_utterance_audio
    from speechlm.data.kaldi_dir import read_data_dir

    data_dir, items = job
    d = read_data_dir(data_dir)
    cands = dict(items)
    # -inf (an empty candidate) is kept out of the JSON: an absent candidate is not ranked
    return [{"utt": utt, "whisper": {t: s for t, s in zip(cands[utt], _SCORER.score(
                x, cands[utt], utt), strict=True) if math.isfinite(s)}}
            for utt, x in iter_utterance_audio(d, [u for u, _ in items], _SCORER.sample_rate)]


def score_set(name: str, data_dir: str, nbest: dict[str, list[Hypothesis]], extra: list[str],
              out: Path, settings: dict, nj: int) -> dict[str, dict[str, float]]:
    """utt -> {candidate: Whisper log-prob}, from ``out`` where already scored with the same
    ``settings`` (model, window, prompt; other settings start the file afresh)."""
    done: dict[str, dict[str, float]] = {}
    settings_file = out.parent / "settings.json"
    if out.is_file() and settings_file.is_file() and \
            json.loads(settings_file.read_text()) == settings:
        for line in out.read_text(encoding="utf-8").splitlines():
            obj = json.loads(line)
            done[obj["utt"]] = obj["whisper"]
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("")
        settings_file.write_text(json.dumps(settings, indent=1) + "\n")
    todo = []
    for utt, hyps in nbest.items():
        cands = [t for t in dict.fromkeys([h.text for h in hyps] + extra) if t]
        if utt not in done or set(cands) - set(done[utt]):
            todo.append((utt, cands))
    if todo:
        t0 = time.time()
        chunks = [todo[i::nj] for i in range(nj)]
        with ProcessPoolExecutor(nj, initializer=_init, initargs=(settings,)) as pool, \
                open(out, "a", encoding="utf-8") as f:
            for rows in pool.map(_score_chunk, [(data_dir, c) for c in chunks if c]):
                for r in rows:
                    done[r["utt"]] = r["whisper"]
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"whisper_pass: {name}: scored {len(todo)} utterances in {time.time() - t0:.0f} s"
              f" ({nj} jobs)", file=sys.stderr)
    return done


def combine(hyps: list[Hypothesis], whisper: dict[str, float], w: float, floor: float
            ) -> list[Hypothesis]:
    """Candidates ranked by the interpolated score (module docstring).

    A candidate one system did not score (outside the N-best; the empty text, which
    Whisper cannot score) gets that system's lowest score for the utterance minus
    ``floor``, so ``w = 0`` ranks exactly as the first pass did.
    """
    first: dict[str, float] = {}
    for h in hyps:
        first.setdefault(h.text, h.score)
    low_first = min(first.values()) - floor if first else 0.0
    low_whisper = min(whisper.values()) - floor if whisper else 0.0
    out = []
    for t in dict.fromkeys([*first, *whisper]):
        a, b = first.get(t, low_first), whisper.get(t, low_whisper)
        out.append(Hypothesis(t, (1 - w) * a + w * b, scores=(("first", a), ("whisper", b))))
    return sorted(out, key=lambda h: -h.score)  # stable: first-pass order breaks ties


def wer(ref: dict[str, list[str]], nbest, whisper, w: float, floor: float) -> ErrorStats:
    stats = ErrorStats()
    for utt, words in ref.items():
        ranked = combine(nbest.get(utt, []), whisper.get(utt, {}), w, floor)
        stats.add(words, ranked[0].words if ranked else [], utt)
    return stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", required=True, type=Path)
    p.add_argument("--sets", nargs="+", required=True, help="set names; the first is dev")
    p.add_argument("--dirs", nargs="+", required=True, help="their data dirs")
    p.add_argument("--model", default="whisper-tiny.en")
    p.add_argument("--window-s", type=float, default=30.0,
                   help="seconds the audio is padded to (Whisper's own 30; less is faster)")
    p.add_argument("--first-pass", choices=("lattice", "beam"), default="lattice",
                   help="N-best of stage 7 (decode_lattice_<set>) or stage 6 (decode_<set>)")
    p.add_argument("--no-prompt", action="store_true",
                   help="do not give Whisper the closed set as its previous-text prompt")
    p.add_argument("--closed-set-from", type=Path, default=None)
    p.add_argument("--max-closed-set", type=int, default=50)
    p.add_argument("--nj", type=int, default=2)
    args = p.parse_args(argv)
    if len(args.sets) != len(args.dirs):
        p.error("--sets and --dirs differ in length")
    extra = closed_set(args.closed_set_from, args.max_closed_set) if args.closed_set_from else []
    out = args.exp / "whisper_pass"
    settings = {"model": args.model, "window_s": args.window_s,
                "prompt": "" if args.no_prompt else vocabulary_prompt(extra)}
    first = "decode_lattice" if args.first_pass == "lattice" else "decode"
    loaded = {}
    for name, data_dir in zip(args.sets, args.dirs, strict=True):
        nbest_file = args.exp / f"{first}_{name}" / "nbest.jsonl"
        if not nbest_file.is_file():
            p.error(f"{nbest_file} is missing: decode {name} first (stage "
                    f"{7 if first == 'decode_lattice' else 6})")
        nbest = read_nbest_jsonl(nbest_file)
        whisper = score_set(name, data_dir, nbest, extra, out / name / "scores.jsonl",
                            settings, args.nj)
        loaded[name] = (nbest, whisper, read_kaldi_text(str(Path(data_dir) / "text")))

    dev_nbest, dev_whisper, dev_ref = loaded[args.sets[0]]
    grid = [(w, f, wer(dev_ref, dev_nbest, dev_whisper, w, f).errors)
            for w in WEIGHTS for f in FLOORS]
    with open(out / "tuning.tsv", "w", encoding="utf-8") as f:
        f.write("whisper_weight\tfloor\tdev_errors\n")
        f.writelines(f"{w}\t{fl}\t{e}\n" for w, fl, e in grid)
    w, floor, _ = min(grid, key=lambda g: (g[2], g[0], g[1]))
    chosen = {"whisper_weight": w, "floor": floor, **settings, "closed_set": extra,
              "first_pass": first, "tuned_on": args.sets[0]}
    (out / "chosen.json").write_text(json.dumps(chosen, indent=1) + "\n")
    for name, (nbest, whisper, ref) in loaded.items():
        dst = args.exp / f"decode_whisper_{name}"
        dst.mkdir(parents=True, exist_ok=True)
        with open(dst / "text", "w", encoding="utf-8") as ft, \
                open(dst / "nbest.jsonl", "w", encoding="utf-8") as fn:
            for utt in ref:
                ranked = combine(nbest.get(utt, []), whisper.get(utt, {}), w, floor)
                fn.write(nbest_line(utt, ranked) + "\n")
                ft.write(f"{utt} {ranked[0].text if ranked else ''}".rstrip() + "\n")
        stats = wer(ref, nbest, whisper, w, floor)
        print(f"whisper_pass: {name}: WER {stats.wer:.2f} (whisper weight {w}, floor {floor})",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
