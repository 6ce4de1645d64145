"""One curriculum round (sample -> transcribe -> judge -> pairs -> DPO) and model evaluation.

A round dir holds, each written once and reused when the round is run again (a killed round
resumes at the first missing file): ``samples.jsonl`` (continuations), ``scored.jsonl``
(transcripts and judge scores), ``pairs.jsonl`` + ``pairs.json`` (the pairs and the counts
of what was dropped and why), ``model/`` (finished when ``model/train.json`` exists) and
``round.json`` (seconds per step), written last.
"""
from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from speechlm.core.errors import InputError
from speechlm.slm.align import TrainConfig, dpo, load_unit_lm, sample_continuations
from speechlm.slm.evalsets import EvalItem, pair_correct, score_items
from speechlm.slm.feedback import Candidate, Pair, build_pairs
from speechlm.slm.units import units_to_text

__all__ = ["by_line_id", "evaluate", "load_judge", "make_prompts", "run_round"]


def by_line_id(units: dict[str, list[int]]) -> dict[str, list[int]]:
    """``synth-data-dir`` utterance ids ``<prefix>-<voice>-<line>`` -> line id.

    Raises:
        InputError: two utterances of one line (say which), e.g. several voices per line.
    """
    out: dict[str, list[int]] = {}
    for utt, u in units.items():
        line = utt.rsplit("-", 1)[-1]
        if line in out:
            raise InputError(f"line {line!r} has more than one utterance (e.g. {utt!r}): "
                             f"speak eval and prompt lines with one voice")
        out[line] = u
    return out


def make_prompts(units: dict[str, list[int]], fraction: float, min_units: int
                 ) -> dict[str, list[int]]:
    """The first ``fraction`` of each utterance's units (utterances giving fewer than
    ``min_units`` prompt units are left out)."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    out = {}
    for utt, u in units.items():
        k = int(len(u) * fraction)
        if k >= min_units and k < len(u):
            out[utt] = u[:k]
    return out


def load_judge(name: str):
    """``llm`` (SmolLM2-135M-Instruct log-prob) or ``embedding`` (MiniLM cosine)."""
    from speechlm.slm.feedback import EmbeddingJudge, LLMJudge

    if name == "llm":
        from speechlm.runtime import LLM

        return LLMJudge(LLM.from_pretrained("smollm2-135m-instruct"))
    if name == "embedding":
        from speechlm.encoders import load_encoder

        return EmbeddingJudge(load_encoder("minilm-l6"))
    raise ValueError(f"judge {name!r} is not one of llm, embedding")


def judge_samples(samples: dict[str, list[list[int]]], prompts: dict[str, list[int]], ctc,
                  judge) -> dict[str, list[Candidate]]:
    """Transcribe prompts and continuations with ``ctc``; score each with ``judge``."""
    prompt_text = dict(zip(sorted(prompts), ctc.transcribe([prompts[p] for p in
                                                            sorted(prompts)]), strict=True))
    out = {}
    for pid in sorted(samples):
        texts = ctc.transcribe(samples[pid])
        try:
            scores = judge(prompt_text[pid], texts)
        except (RuntimeError, ValueError) as e:  # a judge failure is counted, not fatal
            scores = [None] * len(texts)
            print(f"judge failed on prompt {pid}: {e}")
        out[pid] = [Candidate(pid, u, t, s) for u, t, s in
                    zip(samples[pid], texts, scores, strict=True)]
    return out


def _jsonl(path: Path, rows: Sequence[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def run_round(out_dir: str | Path, *, policy: str | Path, ref: str | Path,
              prompts: dict[str, list[int]], ctc, judge, num_units: int, margin: float,
              n: int, max_tokens: int, config: TrainConfig, seed: int = 0) -> dict:
    """One sample -> judge -> pairs -> DPO round; resumes from the files already written."""
    out_dir = Path(out_dir)
    if (out_dir / "round.json").exists():
        return json.loads((out_dir / "round.json").read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    t = time.monotonic()
    samples_path = out_dir / "samples.jsonl"
    if not samples_path.exists():
        lm = load_unit_lm(policy)
        samples, counts = sample_continuations(lm, prompts, n, max_tokens=max_tokens,
                                               seed=seed, num_units=num_units)
        _jsonl(samples_path, [{"prompt_id": p, "units": s} for p in sorted(samples)
                              for s in samples[p]])
        (out_dir / "samples.json").write_text(json.dumps(dict(counts)) + "\n")
        times["sample_seconds"] = round(time.monotonic() - t, 1)
    t = time.monotonic()
    scored_path = out_dir / "scored.jsonl"
    if not scored_path.exists():
        samples = {}
        for r in _read_jsonl(samples_path):
            samples.setdefault(r["prompt_id"], []).append(r["units"])
        groups = judge_samples(samples, prompts, ctc, judge)
        _jsonl(scored_path, [asdict(c) for p in sorted(groups) for c in groups[p]])
        times["judge_seconds"] = round(time.monotonic() - t, 1)
    t = time.monotonic()
    pairs_path = out_dir / "pairs.jsonl"
    if not pairs_path.exists():
        groups = {}
        for r in _read_jsonl(scored_path):
            groups.setdefault(r["prompt_id"], []).append(Candidate(**r))
        pairs, counts = build_pairs(groups, prompts, margin)
        _jsonl(pairs_path, [asdict(p) for p in pairs])
        (out_dir / "pairs.json").write_text(json.dumps({"margin": margin, **counts},
                                                       indent=2) + "\n")
    pairs = [Pair(**r) for r in _read_jsonl(pairs_path)]
    t = time.monotonic()
    if not (out_dir / "model" / "train.json").exists():
        dpo(policy, ref, pairs, out_dir / "model", config)
    train = json.loads((out_dir / "model" / "train.json").read_text())
    summary = {"policy": str(policy), "ref": str(ref), "margin": margin, "n": n,
               "pairs": len(pairs), **json.loads((out_dir / "pairs.json").read_text()),
               **times, "dpo_seconds": train["train_seconds"], "dpo": train}
    (out_dir / "round.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def distinct_n(seqs: Sequence[Sequence], n: int) -> float:
    """Distinct n-grams over all n-grams of ``seqs`` (0 when there are none)."""
    grams = [tuple(s[i:i + n]) for s in seqs for i in range(len(s) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def evaluate(model_dir: str | Path, items: Sequence[EvalItem],
             item_units: dict[str, list[int]], prompts: dict[str, list[int]],
             heldout: dict[str, list[int]], *, ctc, judge, num_units: int, n: int,
             max_tokens: int, seed: int = 1) -> dict:
    """Accuracies per eval kind, judge score and diversity of continuations, perplexity.

    Args:
        item_units: ``<item id>_<role>`` -> units of the spoken item.
        prompts: held-out prompts (never used to build pairs).
        heldout: whole held-out utterances for perplexity.
    """
    lm = load_unit_lm(model_dir)
    acc: dict[str, list[float]] = {}
    all_texts = []
    for it in items:
        texts = {}
        for role in it.texts():
            key = f"{it.id}_{role}"
            if key not in item_units:
                raise InputError(f"eval item {it.id}: no units for {key!r}")
            texts[role] = units_to_text(item_units[key])
        all_texts.append(texts)
    for it, t, (good, bad) in zip(items, all_texts, score_items(lm, items, all_texts),
                                  strict=True):
        acc.setdefault(it.kind, []).append(pair_correct(good, bad))
        if it.kind != "cloze":  # per-unit (EOS included) scores: no reward for brevity
            ng, nb = len(t["good"].split()) + 1, len(t["bad"].split()) + 1
            acc.setdefault(f"{it.kind}_norm", []).append(pair_correct(good / ng, bad / nb))
    out: dict = {f"{k}_acc": sum(v) / len(v) for k, v in sorted(acc.items())}
    out.update({f"{k}_items": len(v) for k, v in sorted(acc.items()) if "_norm" not in k})
    logp = lm.score([units_to_text(heldout[u]) for u in sorted(heldout)], append_eos=True)
    ntok = sum(len(heldout[u]) + 1 for u in heldout)
    out["perplexity"] = math.exp(-sum(logp) / ntok)
    samples, counts = sample_continuations(lm, prompts, n, max_tokens=max_tokens, seed=seed,
                                           num_units=num_units)
    groups = judge_samples(samples, prompts, ctc, judge)
    cands = [c for g in groups.values() for c in g]
    scores = [c.score for c in cands if c.score is not None and math.isfinite(c.score)]
    out["judge_score"] = sum(scores) / len(scores) if scores else float("nan")
    out["judged"] = len(scores)
    out["unjudged"] = len(cands) - len(scores)
    out["distinct2_units"] = distinct_n([c.units for c in cands], 2)
    out["distinct1_words"] = distinct_n([c.text.split() for c in cands], 1)
    out["mean_continuation_units"] = sum(len(c.units) for c in cands) / max(len(cands), 1)
    out.update(dict(Counter(counts)))
    return out


def judge_accuracy(units: dict[str, list[int]], ctc, judge, *, fraction: float = 0.5,
                   min_units: int = 8, seed: int = 0,
                   reference: dict[str, str] | None = None) -> dict:
    """How often ``judge`` prefers an utterance's true second half over another's.

    Each utterance is cut at ``fraction`` of its units; both the true rest and the rest of
    a random other utterance are transcribed by ``ctc``, like sampled continuations are,
    and judged after the transcript of the first part. A judge that cannot tell them apart
    (or cannot score one) gets 0.5 for that prompt; the count is reported.

    With ``reference`` (utterance -> its text), the halves are the reference words cut at
    the same fraction instead ("perfect ears"), over the same utterances and the same
    random others: the judge's own ceiling, which separates a deaf recognizer from a judge
    that cannot tell coherence on this text.
    """
    import random

    rng = random.Random(seed)
    prompts = make_prompts(units, fraction, min_units)
    ids = sorted(prompts)
    if len(ids) < 2:
        raise InputError("judge check needs at least 2 usable utterances")
    if reference is None:
        rests = {u: units[u][len(prompts[u]):] for u in ids}
        ptext = dict(zip(ids, ctc.transcribe([prompts[u] for u in ids]), strict=True))
        rtext = dict(zip(ids, ctc.transcribe([rests[u] for u in ids]), strict=True))
    else:
        missing = [u for u in ids if u not in reference]
        if missing:
            raise InputError(f"no reference text for {len(missing)} utterance(s), e.g. "
                             f"{missing[0]!r}")
        ptext, rtext = {}, {}
        for u in ids:
            words = reference[u].split()
            k = min(max(round(len(words) * fraction), 1), len(words) - 1)
            ptext[u], rtext[u] = " ".join(words[:k]), " ".join(words[k:])
    correct, unscored = 0.0, 0
    for u in ids:
        other = rng.choice([v for v in ids if v != u])
        true_s, other_s = judge(ptext[u], [rtext[u], rtext[other]])
        if true_s is None or other_s is None:
            unscored += 1
            correct += 0.5
        else:
            correct += pair_correct(true_s, other_s)
    return {"judge": judge.name, "ears": "ctc" if reference is None else "reference",
            "accuracy": correct / len(ids), "prompts": len(ids), "unscored": unscored}
