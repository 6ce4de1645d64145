"""Perseus planning time vs DAG size (1F1B, MODELLED GPT-3-like profile), with a plot.

    python tools/bench/perseus_plan.py [--stages 4 8] [--microbatches 8 16 32 64 128]
        [--milp-limit 120] [--png tools/bench/perseus_plan.png] [--json out.json]

For each S x M: the greedy plan (all sizes), the MILP intrinsic plan (HiGHS, time-limited:
past the limit it is the best plan found, not proven optimal; up to --milp-max-nodes) and
the lowtime frontier (Phillips-Dessouky; time quantum = 1/300 of the fastest-to-slowest
span; up to --lowtime-max-nodes). It prints planning seconds, frontier points, lowtime's
panics, and the intrinsic saving of each vs all-max. Profiles are modelled, not measured.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time

from speechlm.runtime.energy import dag as D
from speechlm.runtime.energy import planner as P
from speechlm.runtime.energy.exact import exact_plan
from speechlm.runtime.energy.profile import modelled


def one(stages: int, micro: int, model: str, milp_limit: float, lowtime_max_nodes: int,
        milp_max_nodes: int) -> dict:
    dag, prof = D.one_f_one_b(stages, micro), modelled(model, stages=stages)
    base = P.uniform(dag, prof)
    slow = P.uniform(dag, prof, min(prof.frequencies))
    row = {"stages": stages, "microbatches": micro, "nodes": len(dag.nodes),
           "all_max_s": base.time_s, "all_max_j": base.energy_j}
    if len(dag.nodes) <= lowtime_max_nodes:
        panics = P.PANICS
        t0 = time.perf_counter()
        front = P.frontier(dag, prof, unit_s=(slow.time_s - base.time_s) / 300)
        row["lowtime_s"] = time.perf_counter() - t0
        row["lowtime_points"] = len(front)
        row["lowtime_panicked"] = P.PANICS > panics
        row["lowtime_intrinsic_saving"] = 1 - P.choose(front, base.time_s).energy_j / base.energy_j
    t0 = time.perf_counter()
    g = P.greedy_plan(dag, prof, base.time_s)
    row["greedy_s"] = time.perf_counter() - t0
    row["greedy_intrinsic_saving"] = 1 - g.energy_j / base.energy_j
    g = P.greedy_plan(dag, prof, base.time_s * 1.1)
    row["greedy_extrinsic_1.1x_saving"] = 1 - g.energy_j / base.energy_j
    if len(dag.nodes) > milp_max_nodes:
        return row
    t0 = time.perf_counter()
    ex = exact_plan(dag, prof, base.time_s, time_limit_s=milp_limit)
    row["milp_s"] = time.perf_counter() - t0
    row["milp_hit_limit"] = row["milp_s"] >= milp_limit * 0.98
    row["milp_intrinsic_saving"] = 1 - ex.energy_j / base.energy_j
    ext = exact_plan(dag, prof, base.time_s * 1.1, time_limit_s=milp_limit)
    row["milp_extrinsic_1.1x_saving"] = 1 - ext.energy_j / base.energy_j
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stages", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--microbatches", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    ap.add_argument("--model", default="gpt3")
    ap.add_argument("--milp-limit", type=float, default=30.0)
    ap.add_argument("--milp-max-nodes", type=int, default=512)
    ap.add_argument("--lowtime-max-nodes", type=int, default=256)
    ap.add_argument("--png", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    logging.disable(logging.WARNING)  # lowtime's panics are counted, not logged per call
    print(f"load average {os.getloadavg()[0]:.1f}; profile: MODELLED {args.model}-like")
    rows = []
    for s in args.stages:
        for m in args.microbatches:
            r = one(s, m, args.model, args.milp_limit, args.lowtime_max_nodes,
                    args.milp_max_nodes)
            rows.append(r)
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                              for k, v in r.items()}), flush=True)
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(rows, f, indent=1)
    if args.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        for s in args.stages:
            rs = [r for r in rows if r["stages"] == s]
            ax.loglog([r["nodes"] for r in rs], [r["greedy_s"] for r in rs], "^-",
                      label=f"greedy intrinsic plan, S={s}")
            mi = [r for r in rs if "milp_s" in r]
            ax.loglog([r["nodes"] for r in mi], [r["milp_s"] for r in mi], "o-",
                      label=f"MILP intrinsic plan (limit {args.milp_limit:g} s), S={s}")
            lt = [r for r in rs if "lowtime_s" in r]
            if lt:
                ax.loglog([r["nodes"] for r in lt], [r["lowtime_s"] for r in lt], "s--",
                          label=f"lowtime frontier, S={s}")
        ax.set_xlabel("computations in the DAG (2 S M)")
        ax.set_ylabel("planning time (s), 2 shared CPU cores")
        ax.set_title("Perseus planning time (1F1B, MODELLED profile)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.png, dpi=120)


if __name__ == "__main__":
    main()
