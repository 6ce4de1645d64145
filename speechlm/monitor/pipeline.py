"""Train Argos rules on a NAB-form dir and evaluate them beside classic detectors.

Experiment dir layout (``speechlm monitor train --out EXP``)::

    EXP/config.json           resolved ArgosConfig + data dir, split, model
    EXP/calls.jsonl           one line per LLM call (agent, prompt, tokens, seconds, text)
    EXP/reviews.jsonl         one line per candidate rule (attempts, repairs, decision)
    EXP/rules/<group>/*.rule.json
    EXP/deploy.json           {"<group>": ["<rule name>", ...]}: OR of these per group
    EXP/train.json            per group: chunks, accepted rules, training F1
    EXP/eval.json, EXP/eval.md  (``speechlm monitor eval``)
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import numpy as np

from speechlm.monitor.agents import ArgosConfig, save_group, train_group
from speechlm.monitor.aggregate import combine, fit_weight
from speechlm.monitor.calls import LLMClient
from speechlm.monitor.detectors import DETECTORS, fit_threshold, score_series, threshold_of
from speechlm.monitor.nab import Series, read_nab, split
from speechlm.monitor.rule import Rule
from speechlm.monitor.sandbox import run_rule
from speechlm.monitor.scoring import score

__all__ = ["train", "evaluate", "group_of"]


def group_of(key: str) -> str:
    return key.split("/")[0] if "/" in key else "all"


def _groups(series: list[Series]) -> dict[str, list[Series]]:
    out: dict[str, list[Series]] = defaultdict(list)
    for s in series:
        out[group_of(s.key)].append(s)
    return dict(out)


def train(data_dir: str | Path, out_dir: str | Path, client: LLMClient, config: ArgosConfig,
          train_frac: float = 0.5, groups: list[str] | None = None, log=print) -> dict:
    """Run the agents over every group (or ``groups``); write the experiment dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "reviews.jsonl").unlink(missing_ok=True)
    series = read_nab(data_dir)
    (out / "config.json").write_text(json.dumps(
        {"data": str(data_dir), "train_frac": train_frac, "model": client.model,
         "argos": asdict(config), "groups": groups}, indent=2) + "\n")
    summary, deploy = {}, {}
    for group, members in _groups(series).items():
        if groups and group not in groups:
            continue
        start = time.perf_counter()
        n_calls = len(client.calls)
        parts = [split(s, train_frac)[0] for s in members]
        result = train_group(group, parts, client, config, log=log)
        save_group(result, out)
        deploy[group] = [r.name for r in result.rules]
        calls = client.calls[n_calls:]
        summary[group] = {
            "series": len(members), "chunks": int(sum(p.labels.any() for p in parts)),
            "candidates": len(result.reviews), "accepted": len(result.rules),
            "rejected_broken": sum(r["decision"] == "rejected" for r in result.reviews),
            "repairs": sum(r.get("repairs", 0) for r in result.reviews),
            "repaired_ok": sum(r.get("repairs", 0) > 0 and r["decision"] != "rejected"
                               for r in result.reviews),
            "llm_calls": len(calls),
            "llm_seconds": sum(c["seconds"] or 0 for c in calls),
            "prompt_tokens": sum(c["prompt_tokens"] or 0 for c in calls),
            "generated_tokens": sum(c["generated_tokens"] or 0 for c in calls),
            "train_f1": result.train_f1, "seconds": time.perf_counter() - start}
        log(f"[argos] {group}: {summary[group]}")
    (out / "deploy.json").write_text(json.dumps(deploy, indent=2) + "\n")
    (out / "train.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _rule_masks(exp: Path, members: list[Series], rule_names: list[str], limits) -> tuple:
    """OR over the group's deployed rules, each run once over the whole series."""
    masks = [np.zeros(len(s), dtype=bool) for s in members]
    cpu = wall = 0.0
    for name in dict.fromkeys(rule_names):  # a run before duplicates were refused
        rule = Rule.load(exp / "rules" / group_of(members[0].key) / f"{name}.rule.json")
        run = run_rule(rule, [(s.values, s.timestamps) for s in members], limits)
        wall += run.wall_s
        cpu += run.cpu_s or 0.0
        if run.ok:
            masks = [a | b for a, b in zip(masks, run.masks, strict=True)]
    return masks, cpu, wall


def evaluate(data_dir: str | Path, exp_dir: str | Path | None, train_frac: float = 0.5,
             classic: str = "seasonal", detectors: tuple[str, ...] = DETECTORS,
             config: ArgosConfig | None = None) -> dict:
    """Scores on the test part of every series: classic detectors, the deployed Argos rules
    and their aggregation (OR / AND / weighted) with ``classic``.

    Rules run over the whole series (the training part gives them history); only the
    test part is scored. Thresholds and aggregation weights are fitted on training parts.
    """
    config = config or ArgosConfig()
    series = read_nab(data_dir)
    exp = Path(exp_dir) if exp_dir else None
    deploy = json.loads((exp / "deploy.json").read_text()) if exp else {}
    preds: dict[str, list[np.ndarray]] = defaultdict(list)
    labels: list[np.ndarray] = []
    cost = {"rule_cpu_s": 0.0, "rule_wall_s": 0.0, "points": 0}
    for group, members in _groups(series).items():
        cuts = [len(split(s, train_frac)[0]) for s in members]
        full_labels = [s.labels for s in members]
        labels += [y[n:] for y, n in zip(full_labels, cuts, strict=True)]
        classic_masks = {}
        for name in detectors:
            scores = [score_series(name, s.timestamps, s.values, n)
                      for s, n in zip(members, cuts, strict=True)]
            q, _ = fit_threshold([sc[:n] for sc, n in zip(scores, cuts, strict=True)],
                                 [y[:n] for y, n in zip(full_labels, cuts, strict=True)])
            thr = [threshold_of(sc[:n], q) for sc, n in zip(scores, cuts, strict=True)]
            classic_masks[name] = [sc > t for sc, t in zip(scores, thr, strict=True)]
            if name == classic:
                ratio = [sc / max(t, 1e-12) for sc, t in zip(scores, thr, strict=True)]
            preds[name] += [m[n:] for m, n in zip(classic_masks[name], cuts, strict=True)]
        if exp is None:
            continue
        rules, cpu, wall = _rule_masks(exp, members, deploy.get(group, []), config.limits)
        cost["rule_cpu_s"] += cpu
        cost["rule_wall_s"] += wall
        cost["points"] += sum(len(s) for s in members) * max(1, len(deploy.get(group, [])))
        preds["argos"] += [m[n:] for m, n in zip(rules, cuts, strict=True)]
        base = classic_masks[classic]
        for mode in ("or", "and"):
            preds[f"argos_{mode}_{classic}"] += [
                combine(r, b, mode)[n:] for r, b, n in zip(rules, base, cuts, strict=True)]
        w = fit_weight([r[:n] for r, n in zip(rules, cuts, strict=True)],
                       [x[:n] for x, n in zip(ratio, cuts, strict=True)],
                       [y[:n] for y, n in zip(full_labels, cuts, strict=True)])
        preds[f"argos_weighted_{classic}"] += [
            combine(r, b, "weighted", ratio=x, weight=w)[n:]
            for r, b, x, n in zip(rules, base, ratio, cuts, strict=True)]
    table = {name: score(p, labels) for name, p in preds.items()}
    return {"table": table, "cost": cost, "series": len(series),
            "test_points": int(sum(y.size for y in labels))}


def markdown_table(results: dict) -> str:
    rows = ["| detector | point P | point R | point F1 | range P | range R | range F1 | "
            "PA P | PA R | PA F1 |", "|---" * 10 + "|"]
    for name, s in results["table"].items():
        cells = [f"{s[m][k]:.3f}" for m in ("point", "range", "point_adjusted")
                 for k in ("precision", "recall", "f1")]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"
