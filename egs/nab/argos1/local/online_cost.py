"""Online detection cost of deployed rules: one sandbox run judges one newest point.

For each rule (the serve rules of conf/serve_rules and the Argos rules of an experiment)
it runs the rule on a 360-point history (a daily-like wave + noise) ``--repeats`` times in
a fresh sandbox, as ``speechlm monitor run`` does each interval, and once on 100 such
histories in one sandbox (the compute cost without the process start).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from speechlm.monitor.rule import load_rules
from speechlm.monitor.sandbox import SandboxLimits, run_rule


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rules", type=Path, required=True, help="serve rules dir")
    p.add_argument("--exp", type=Path, default=None, help="experiment dir (Argos rules)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    t = 1.7e9 + 10.0 * np.arange(360)
    v = 0.05 + 0.01 * np.sin(np.arange(360) / 30) + rng.normal(0, 0.002, 360)
    rules = [("serve", r) for r in load_rules(args.rules)]
    if args.exp is not None and (args.exp / "rules").is_dir():
        for group in sorted((args.exp / "rules").iterdir()):
            rules += [(f"argos/{group.name}", r) for r in load_rules(group)]
    limits = SandboxLimits(cpu_s=5, wall_s=30, memory_mb=512)
    rows = []
    for where, rule in rules:
        walls, cpus = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run = run_rule(rule, [(v, t)], limits)
            walls.append(time.perf_counter() - start)
            cpus.append(run.cpu_s or float("nan"))
        batch = run_rule(rule, [(v, t)] * 100, limits)
        rows.append({"rule": rule.name, "from": where, "ok": run.ok,
                     "wall_s_per_point": float(np.median(walls)),
                     "child_cpu_s_per_point": float(np.nanmedian(cpus)),
                     "batched_wall_s_per_point": batch.wall_s / 100,
                     "batched_child_cpu_s_per_point": (batch.cpu_s or float("nan")) / 100})
        print(json.dumps(rows[-1]))
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
