"""One second-pass method end to end: tune on a dev set, apply to eval sets, write results.

Set specs name a file, a speaker-disjoint half and a subset::

    test_ls_other.json@2:100   the second half (split_by_speaker) of the file, its first 100
    test_ls_clean.json@1       the first half;   test_ls_clean.json:50   the first 50

A subset takes the first utterances (contiguous, so whole speakers or blocks stay together
as far as they fit).

Outputs under ``out``: ``hyp-<set>.txt`` (Kaldi text of the chosen hypotheses),
``tuning.txt`` (dev WER of every ``llm_scale`` or guard threshold), ``result.json`` (WER of
the 1-best, the oracle and the method per set, the tuned setting, latency per utterance,
failures and fallbacks, free GER outputs that beat the oracle), ``notes.txt`` (bad input),
``partial-<set>.jsonl`` (every utterance's scores or GER output and its seconds, appended
as the run goes: a killed run resumes from it; kept after the run, so a set can later be
extended without redoing the utterances it holds).
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from speechlm.llm.second_pass import methods as M
from speechlm.llm.second_pass.evaluate import errors, gap_closed, one_best, oracle, wer
from speechlm.llm.second_pass.nbest import NbestItem, Note, read_nbest, split_by_speaker
from speechlm.llm.second_pass.prompt import activation_turns

__all__ = ["TRAINED", "EvalSet", "load_set", "load_trained_scorer", "run_method",
           "run_resumable"]

# methods whose scorer is a trained dir (``speechlm rescore train --method M``), not the LLM
TRAINED = ("mwer", "pll")

_SPEC = re.compile(r"^(?P<path>.*?)(@(?P<half>[12]))?(:(?P<n>\d+))?$")


@dataclass
class EvalSet:
    name: str
    items: list[NbestItem]


def load_set(spec: str, notes: list[Note] | None = None, *, block: int = 50,
             refs: dict[str, str] | None = None) -> EvalSet:
    """The utterances of a set spec (see the module doc); its name is ``<stem>[_h<half>]``
    (a decode dir's ``nbest.jsonl`` is named after its dir). ``refs``: references by utt
    for files without them."""
    m = _SPEC.match(spec)
    path = Path(m.group("path"))
    if path.is_dir():
        path = path / "nbest.jsonl"
    items, found = read_nbest(path, refs=refs)
    if notes is not None:
        notes.extend(found)
    name = path.parent.name if path.name == "nbest.jsonl" else path.stem
    if m.group("half"):
        items = split_by_speaker(items, block=block)[int(m.group("half")) - 1]
        name += f"_h{m.group('half')}"
    if m.group("n"):
        items = items[: int(m.group("n"))]
    if not items:
        raise ValueError(f"{spec}: no utterances")
    return EvalSet(name, items)


def load_trained_scorer(method: str, model_dir: str | os.PathLike):
    """The scorer of a trained method's dir and what ``result.json`` records of it.

    Args:
        method: ``mwer`` (``mwer.json``: MWER or likelihood scorers) or ``pll``.
        model_dir: the dir ``speechlm rescore train --method METHOD`` wrote.

    Returns:
        (scorer with ``score(items)``, ``{"model", "scorer", "train"}``).

    Raises:
        FileNotFoundError: no such dir, or a dir of the other method (the message says).
        ValueError: ``method`` is not a trained method.
    """
    d = Path(model_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: no such scorer dir (train one with 'speechlm rescore "
                                f"train --method {method}')")
    if method == "mwer":
        from speechlm.llm.second_pass.mwer import load_scorer

        if not (d / "mwer.json").is_file() and (d / "pll.json").is_file():
            raise FileNotFoundError(f"{d}: a PLL scorer dir (pll.json): use method pll")
        scorer, meta = load_scorer(d), d / "mwer.json"
    elif method == "pll":
        from speechlm.llm.second_pass.pll import load_pll_scorer

        scorer, meta = load_pll_scorer(d), d / "pll.json"
    else:
        raise ValueError(f"method {method!r} has no trained scorer dir; those that do: "
                         f"{', '.join(TRAINED)}")
    return scorer, {"model": str(d), "scorer": scorer.config.key,
                    "train": json.loads(meta.read_text()).get("train", {})}


def _write_text(path: Path, hyps: dict[str, str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{u} {h}".rstrip() + "\n" for u, h in sorted(hyps.items())),
                   encoding="utf-8")
    os.replace(tmp, path)


def run_resumable(run_on: Callable[[Sequence[NbestItem]], dict], items: Sequence[NbestItem],
                  path: str | Path, fingerprint: dict, *, chunk: int = 10) -> dict:
    """``run_on(items)`` in chunks of ``chunk`` utterances, each chunk's results appended to
    ``path`` as it finishes, so that a killed run loses at most one chunk.

    ``path`` holds a ``{"fingerprint": ...}`` line, then one line per utterance (a
    ``methods.Scored`` or ``methods.Correction`` with its ``utt``). Utterances already in a
    file of the same fingerprint are read back, not run again (their seconds are the
    original run's); a file of another fingerprint (another method, model or setting) is
    started over, and a line cut by a kill ends what is read.

    Returns:
        ``{utt: Scored | Correction}`` for every utterance of ``items``, in their order.
    """
    path = Path(path)
    head = {"fingerprint": fingerprint}
    done: dict = {}
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        if lines and _loads(lines[0]) == head:
            for line in lines[1:]:
                rec = _loads(line)
                if rec is None:  # the line a kill cut short: what follows is not trusted
                    break
                utt = rec.pop("utt")
                done[utt] = (M.Correction if "text" in rec else M.Scored)(**rec)
    # rewrite what is kept, so that appending never follows a cut line
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in
                           [head, *({"utt": u, **asdict(v)} for u, v in done.items())]),
                   encoding="utf-8")
    os.replace(tmp, path)
    todo = [it for it in items if it.utt not in done]
    with open(path, "a", encoding="utf-8") as f:
        for i in range(0, len(todo), chunk):
            got = run_on(todo[i: i + chunk])
            f.writelines(json.dumps({"utt": u, **asdict(v)}) + "\n" for u, v in got.items())
            f.flush()
            done.update(got)
    return {it.utt: done[it.utt] for it in items}


def _loads(line: str) -> dict | None:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def _summary(items: Sequence[NbestItem], picks: dict[str, str], seconds: list[float]) -> dict:
    first, best = wer(items, one_best(items)), wer(items, oracle(items))
    got = wer(items, picks)
    # counts, so that halves (the two folds of a cross-fit) pool into one WER
    scored = [it for it in items if it.ref is not None]
    counts = {"words": sum(len(it.ref.split()) for it in scored),
              "errors": sum(errors(it.ref, picks.get(it.utt, "")) for it in scored),
              "one_best_errors": sum(errors(it.ref, one_best([it])[it.utt]) for it in scored),
              "oracle_errors": sum(errors(it.ref, oracle([it])[it.utt]) for it in scored)}
    return {"utts": len(items), "wer": round(got, 2), "one_best": round(first, 2),
            "oracle": round(best, 2),
            "rel_gain": round(100 * (first - got) / first, 1) if first else None,
            "gap_closed": round(gap_closed(got, first, best), 1),
            "latency_s": round(sum(seconds) / max(len(seconds), 1), 3), **counts}


def run_method(config: M.MethodConfig, dev: EvalSet, evals: Sequence[EvalSet], out: str | Path,
               *, llm=None, scorer=None, train: Sequence[NbestItem] = (), encoder=None,
               notes: list[Note] | None = None, extra: dict | None = None,
               progress: bool = True) -> dict:
    """Tune ``config`` on ``dev``, apply to ``evals``; write and return the results.

    Args:
        config: the method setting.
        dev, evals: tuning set and report sets.
        llm: the runtime LLM (all methods but mwer).
        scorer: a ``second_pass.mwer.Scorer`` (mwer) or ``second_pass.pll.PllScorer`` (pll).
        train: the training split, for demonstrations.
        encoder: sentence encoder for ``similar`` demonstrations.
        extra: fields added to result.json (model, training stats).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    notes = notes if notes is not None else []
    # the 1-minute load average when the run started and ended: latencies on a shared
    # machine mean little without it
    result: dict = {"method": config.key, **(extra or {}), "load": [round(os.getloadavg()[0], 2)]}
    builder = M.PromptBuilder(llm.tokenizer) if llm is not None else None
    if config.method == "tap":
        builder.activation = activation_turns(llm)
        result["activation"] = list(builder.activation)
    demos = M.DemoPool(train, config.shots, config.demos, encoder=encoder, seed=config.seed) \
        if config.shots else None

    def run_on(items):
        if config.method in ("mwer", "pll"):
            return scorer.score(items, progress=progress)
        if config.method == "ger-free":
            return M.correct(llm, items, config, builder=builder, demos=demos, notes=notes,
                             progress=progress)
        return M.score(llm, items, config, builder=builder, demos=demos, notes=notes,
                       progress=progress)

    # what decides the per-utterance results: a partial file of another setting is redone
    given = extra or {}
    fingerprint = {"config": asdict(config),
                   **{k: str(given[k]) for k in ("llm", "model", "adapter") if k in given},
                   "train": [len(train), train[0].utt, train[-1].utt] if train else [],
                   # a scorer or adapter trained again into the same dir has other stats
                   "model_stats": given.get("train", {})}

    def resumable(s: EvalSet) -> dict:
        return run_resumable(run_on, s.items, out / f"partial-{s.name}.jsonl", fingerprint)

    sets = {}
    dev_out = resumable(dev)
    if config.method == "ger-free":
        param, table = M.tune_threshold(dev.items, dev_out)
        result["threshold"] = param
    else:
        param, table = M.tune_scale(dev.items, dev_out)
        result["llm_scale"] = param
    (out / "tuning.txt").write_text(
        ("threshold" if config.method == "ger-free" else "llm_scale") + "\tdev WER\n"
        + "".join(f"{k:g}\t{v:.2f}\n" for k, v in table.items()))
    for s in [dev, *evals]:
        res = dev_out if s is dev else resumable(s)
        if config.method == "ger-free":
            picks, counts = M.guard(s.items, res, param)
            with open(out / f"corrections-{s.name}.jsonl", "w", encoding="utf-8") as f:
                f.writelines(json.dumps({"utt": u, "text": c.text, "reason": c.reason}) + "\n"
                             for u, c in res.items())
            extra_stats = {**counts, "beats_oracle": sum(
                1 for it in s.items if it.ref is not None and it.hyps
                and errors(it.ref, picks[it.utt]) < errors(it.ref, oracle([it])[it.utt]))}
        else:
            picks = M.choose(s.items, res, param)
            # every setting's WER on every set, icefall's results-by-setting (reading only)
            extra_stats = {"failed": sum(r.failed for r in res.values()),
                           "sweep": {f"{k:g}": round(wer(s.items, M.choose(s.items, res, k)), 2)
                                     for k in table}}
            with open(out / f"scores-{s.name}.jsonl", "w", encoding="utf-8") as f:
                f.writelines(json.dumps({"utt": u, "scores": r.scores}) + "\n"
                             for u, r in res.items())
        _write_text(out / f"hyp-{s.name}.txt", picks)
        sets[s.name] = {**_summary(s.items, picks, [r.seconds for r in res.values()]),
                        **extra_stats, "role": "dev" if s is dev else "eval"}
    result["sets"] = sets
    result["load"].append(round(os.getloadavg()[0], 2))
    (out / "notes.txt").write_text("".join(f"{n}\n" for n in notes), encoding="utf-8")
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    return result
