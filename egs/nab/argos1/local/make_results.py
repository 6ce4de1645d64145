"""RESULTS.md and a bar plot for egs/nab/argos1 from the experiment's JSON files."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
from pathlib import Path

NAMES = {"zscore": "rolling z-score", "seasonal": "daily-profile residual",
         "iforest": "IsolationForest (scikit-learn)", "argos": "Argos rules (OR per group)"}
METRICS = (("point", "point-wise"), ("range", "range-based (Tatbul 2018)"),
           ("point_adjusted", "point-adjusted"))


def _name(key: str) -> str:
    if key.startswith("argos_"):
        mode, classic = key.split("_")[1], key.split("_", 2)[2]
        return f"Argos {mode.upper()} {NAMES.get(classic, classic)}"
    return NAMES.get(key, key)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--exp", type=Path, required=True)
    p.add_argument("--cmdline", default="")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--remote", type=Path, default=None,
                   help="an experiment trained through --llm-url (same pipeline)")
    args = p.parse_args()
    argos = args.exp / "argos"
    ev = json.loads((argos / "eval.json").read_text())
    train = json.loads((argos / "train.json").read_text())
    config = json.loads((argos / "config.json").read_text())
    calls, reviews = _jsonl(argos / "calls.jsonl"), _jsonl(argos / "reviews.jsonl")
    lines = ["# RESULTS: Argos rules on NAB (egs/nab/argos1)", "",
             f"- date: `{datetime.datetime.now().isoformat(timespec='seconds')}`, "
             f"{os.cpu_count()} CPU cores shared with other jobs (loaded), python "
             f"{platform.python_version()}, no GPU",
             f"- command: `{args.cmdline}`",
             f"- data: `{config['data']}`: {ev['series']} series; each split by time, first "
             f"{config['train_frac']:.0%} train, rest test ({ev['test_points']} test points)",
             f"- rule writer: `{config['model']}` (greedy, max {config['argos']['max_tokens']}"
             f" new tokens), prompts `{config['argos']['detect_prompt']}` / "
             f"`{config['argos']['repair_prompt']}`; up to {config['argos']['max_chunks'] or 'all'}"
             f" chunks per group, {config['argos']['max_repairs']} repairs per rule",
             "- thresholds (classic) and the aggregation weight are fitted per NAB group on "
             "training F1; rules run over the whole series, only the test part is scored", ""]
    for key, title in METRICS:
        lines += [f"## {title}", "", "| detector | precision | recall | F1 |", "|---|---|---|---|"]
        for name, s in ev["table"].items():
            m = s[key]
            lines.append(f"| {_name(name)} | {m['precision']:.3f} | {m['recall']:.3f} | "
                         f"**{m['f1']:.3f}** |")
        lines.append("")
    lines += ["Point-adjusted F1 counts a whole labelled window as found when one point in it "
              "is flagged; it is the Argos paper's metric and inflates scores (a detector "
              "flagging at random scores well on NAB's long windows).", "",
              "## Agents", "",
              "| group | series | chunks | candidates | LLM calls | repairs | repaired ok | "
              "broken (rejected) | accepted | train F1 | LLM s | tokens in/out |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    tot = {k: 0.0 for k in ("llm_calls", "repairs", "accepted", "llm_seconds", "prompt_tokens",
                            "generated_tokens", "candidates", "rejected_broken", "repaired_ok")}
    for group, g in train.items():
        for k in tot:
            tot[k] += g[k]
        lines.append(f"| {group} | {g['series']} | {g['chunks']} | {g['candidates']} | "
                     f"{g['llm_calls']} | {g['repairs']} | {g['repaired_ok']} | "
                     f"{g['rejected_broken']} | {g['accepted']} | {g['train_f1']:.3f} | "
                     f"{g['llm_seconds']:.0f} | {g['prompt_tokens']}/{g['generated_tokens']} |")
    acc = max(tot["accepted"], 1)
    lines += ["", f"Totals: {int(tot['llm_calls'])} LLM calls ({int(tot['candidates'])} "
              f"detections, {int(tot['repairs'])} repairs, {int(tot['repaired_ok'])} rules "
              f"working after repair, {int(tot['rejected_broken'])} rejected as broken), "
              f"{int(tot['accepted'])} rules accepted; {tot['llm_seconds']:.0f} s of LLM time,"
              f" {int(tot['prompt_tokens'])} prompt + {int(tot['generated_tokens'])} generated"
              f" tokens. Cost per accepted rule: {tot['llm_seconds'] / acc:.0f} s, "
              f"{(tot['prompt_tokens'] + tot['generated_tokens']) / acc:.0f} tokens, "
              f"{tot['llm_calls'] / acc:.1f} calls.", ""]
    if calls and all(c["replayed"] for c in calls):
        lines += ["The LLM answers were generated once by the local model (stage 2, its log "
                  "kept as `llm_calls_smollm2.jsonl`) and replayed from that log by "
                  "`speechlm monitor train --replay` after the review learnt to refuse "
                  "duplicates and rules that add nothing; times and tokens are the original "
                  "calls'.", ""]
    if calls:
        secs = sorted(c["seconds"] for c in calls)
        toks = sorted(c["generated_tokens"] for c in calls)
        lines += [f"Median LLM call: {secs[len(secs) // 2]:.0f} s for "
                  f"{toks[len(toks) // 2]} generated tokens (CPU, shared).", ""]
    kinds: dict[str, int] = {}
    for r in reviews:
        for a in r["attempts"]:
            kinds[a["kind"]] = kinds.get(a["kind"], 0) + 1
    lines += ["Sandbox verdicts over all attempts: " +
              ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + ".", ""]
    decided = [r for r in reviews if r.get("decision") in ("accepted", "not_accepted")]
    if decided:
        lines += ["| group | chunk | decision | rule alone train F1 | group train F1 "
                  "before -> with it | points flagged |", "|---|---|---|---|---|---|"]
        for r in decided:
            lines.append(f"| {r['group']} | {r['chunk'].split('/')[-1]} | {r['decision']} | "
                         f"{r['rule_alone_f1']:.3f} | {r['train_f1_before']:.3f} -> "
                         f"{r['train_f1']:.3f} | {r['flagged']} |")
        lines.append("")
    rules_dir = argos / "rules"
    if rules_dir.is_dir():
        lines += ["### Accepted rules", ""]
        for f in sorted(rules_dir.glob("*/*.rule.json")):
            rule = json.loads(f.read_text())
            lines += [f"`{f.parent.name}/{rule['name']}` (from {rule['provenance']['chunk']}, "
                      f"{rule['provenance']['repairs']} repairs):", "", "```python",
                      rule["source"].rstrip(), "```", ""]
    cost = args.exp / "online_cost.json"
    if cost.is_file():
        lines += ["## Online detection cost", "",
                  "One sandbox run per rule per interval judges the newest point of a "
                  "360-point history (`speechlm monitor run`).", "",
                  "| rule | from | wall s / point | child CPU s / point | batched wall s / "
                  "point | batched CPU s / point |", "|---|---|---|---|---|---|"]
        for r in json.loads(cost.read_text()):
            lines.append(f"| {r['rule']} | {r['from']} | {r['wall_s_per_point']:.3f} | "
                         f"{r['child_cpu_s_per_point']:.3f} | "
                         f"{r['batched_wall_s_per_point']:.4f} | "
                         f"{r['batched_child_cpu_s_per_point']:.4f} |")
        lines += ["", "Most of a fresh run is starting Python and importing numpy in the "
                  "locked-down child (about 0.1 s CPU); batched, 100 histories share one "
                  "start.", ""]
    if args.remote is not None and (args.remote / "train.json").is_file():
        rcfg = json.loads((args.remote / "config.json").read_text())
        lines += ["## The same pipeline through an OpenAI-compatible endpoint", "",
                  f"`speechlm monitor train --llm-url URL --llm-model {rcfg['model']} "
                  f"--groups {' '.join(rcfg['groups'] or [])} --max-chunks "
                  f"{rcfg['argos']['max_chunks']}`, the endpoint being speechlm's own "
                  "OpenAI-compatible server (`speechlm.serve.openai_server`) over the same "
                  "SmolLM2 (no stronger model is installable here):", ""]
        for group, g in json.loads((args.remote / "train.json").read_text()).items():
            rules = json.loads((args.remote / "deploy.json").read_text())[group]
            lines.append(f"- {group}: {g['llm_calls']} call(s), {g['llm_seconds']:.0f} s, "
                         f"{g['prompt_tokens']}/{g['generated_tokens']} tokens (from the "
                         f"server's usage), accepted {rules}, train F1 {g['train_f1']:.3f}")
        lines.append("")
    fault = args.exp / "serve_fault.json"
    if fault.is_file():
        f = json.loads(fault.read_text())
        lines += ["## Fault injected into a real `speechlm serve`", "",
                  f"`local/serve_fault_demo.py`: `speechlm serve api` (PocketSphinx, one decode "
                  f"worker) scraped every {f['interval_s']:g} s by the monitor with "
                  "`conf/serve_rules` (hand-written baseline rules, not LLM-written); a client "
                  "sends 0.5 s clips, then 6 s clips (the slow backend).", "",
                  f"- median request latency: normal {f['normal_latency_s']:.2f} s, during the "
                  f"fault {f['fault_latency_s']:.2f} s",
                  "- latency alert after the fault started: " +
                  (f"{f['alert_after_fault_s']:.1f} s" if f["alert_after_fault_s"] is not None
                   else "none"),
                  f"- false alarms before the fault: {f['false_alarms_before_fault']}",
                  f"- rule runs: {f['rule_evaluations']}, {f['rule_wall_s_per_evaluation']:.3f}"
                  f" s wall and {f['rule_child_cpu_s_per_evaluation']:.3f} s child CPU each",
                  ""]
    c = ev["cost"]
    if c["points"]:
        lines += [f"Offline (NAB test eval): {c['rule_wall_s']:.1f} s wall for "
                  f"{c['points']} rule-points, {1e6 * c['rule_wall_s'] / c['points']:.1f} us "
                  f"per point per rule, sandbox start included.", ""]
    args.out.write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(ev["table"])
    fig, ax = plt.subplots(figsize=(8, 3.4))
    for i, (key, title) in enumerate(METRICS):
        ax.bar([x + 0.27 * i for x in range(len(names))],
               [ev["table"][n][key]["f1"] for n in names], 0.27, label=title)
    ax.set_xticks([x + 0.27 for x in range(len(names))],
                  [n.replace("argos_", "Argos ").replace("_", "\n") for n in names], fontsize=7)
    ax.set_ylabel("F1 (test halves)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=110)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
