"""Perseus energy planning: frontier, plan and predicted savings; profiles measured via zeus.

    speechlm energy plan --schedule 1f1b --stages 4 --microbatches 8 --modelled gpt3 \\
        [--straggler-time T] [--png frontier.png] [--out plan.json]
    speechlm energy plan --schedule decode --steps 16 --cpu-phase --profile prof.json
    speechlm energy profile --out prof.json [--iters 20]

``plan`` builds the iteration's computation DAG, draws the time–energy frontier with
lowtime (Phillips–Dessouky), finds the exact least-energy plan for the target by MILP
(intrinsic: target = the fastest time; extrinsic: --straggler-time), and prints both against
running everything at the maximum frequency. ``--modelled`` profiles are a documented model
(speechlm/runtime/energy/profile.py), not measurements: the output says MODELLED.
``--out`` writes the plan the governor reads (``PerseusGovernor``, dry-run by default).

``profile`` times a small MLP forward and backward at the current clock (it never changes
clocks) and reads energy through zeus; where zeus reads nothing, energy is null, never 0.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from collections import Counter

from speechlm.bin import command_main
from speechlm.runtime.energy import dag as D
from speechlm.runtime.energy import planner as P
from speechlm.runtime.energy.profile import MODELS, Option, Profile, load, modelled

log = logging.getLogger("speechlm.energy")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("plan", "profile"))
    parser.add_argument("--schedule", default="1f1b", choices=("1f1b", "gpipe", "decode"))
    parser.add_argument("--stages", type=int, default=4)
    parser.add_argument("--microbatches", type=int, default=8)
    parser.add_argument("--replicas", type=int, default=1, help="data-parallel copies")
    parser.add_argument("--steps", type=int, default=16, help="decode steps (--schedule decode)")
    parser.add_argument("--cpu-phase", action="store_true",
                        help="decode steps have a parallel CPU phase (Fiddler offload)")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--profile", default=None, help="profile JSON (speechlm energy profile)")
    src.add_argument("--modelled", default=None, choices=sorted(MODELS),
                     help="a MODELLED pipeline profile (not measured)")
    parser.add_argument("--straggler-time", type=float, default=None,
                        help="extrinsic mode: the straggler's iteration time (s)")
    parser.add_argument("--solver", nargs="+", default=["lowtime", "exact", "greedy"],
                        choices=("lowtime", "exact", "greedy"),
                        help="planners to run; the least-energy plan meeting the target wins")
    parser.add_argument("--milp-time-limit", type=float, default=60.0)
    parser.add_argument("--exact-points", type=int, default=0,
                        help="also solve the MILP at this many targets up to the slowest time")
    parser.add_argument("--unit-s", type=float, default=None, help="lowtime time quantum")
    parser.add_argument("--png", default=None, help="plot the frontier here")
    parser.add_argument("--out", default=None,
                        help="plan JSON (plan) or profile JSON (profile) to write")
    parser.add_argument("--iters", type=int, default=20, help="profile: repetitions")


def build_dag(args: argparse.Namespace) -> D.DAG:
    if args.schedule == "decode":
        dag = D.decode_loop(args.steps, cpu_phase=args.cpu_phase)
    else:
        dag = D.SCHEDULES[args.schedule](args.stages, args.microbatches)
    return D.data_parallel(dag, args.replicas) if args.replicas > 1 else dag


def _summary(dag: D.DAG, plan: P.Plan) -> str:
    by_comp: dict[str, Counter] = {}
    for name, f in plan.freqs.items():
        by_comp.setdefault(dag.nodes[name].computation, Counter())[f] += 1
    return "\n".join(f"    {c:18s} " + " ".join(f"{f}MHz x{n}" for f, n in sorted(cnt.items()))
                     for c, cnt in sorted(by_comp.items()))


def _line(label: str, p: P.Plan, base: P.Plan) -> str:
    return (f"{label:34s} time {p.time_s:9.4f} s  energy {p.energy_j:11.1f} J  "
            f"saves {100 * (1 - p.energy_j / base.energy_j):5.1f}% vs all-max")


def plan_cmd(args: argparse.Namespace) -> int:
    if args.profile:
        prof = load(args.profile)
    elif args.modelled:
        prof = modelled(args.modelled, stages=args.stages)
    else:
        raise ValueError("give --profile FILE or --modelled " + "|".join(sorted(MODELS)))
    dag = build_dag(args)
    dag.topological_order()  # a cycle is an error naming a node
    missing = sorted(dag.computations() - set(prof.computations))
    if missing:
        raise ValueError(f"{prof.origin}: the profile lacks computations {missing}")
    label = "MODELLED profile (not measured)" if prof.source == "modelled" else prof.source
    print(f"profile: {label}: {prof.note or prof.origin}")
    print(f"DAG: {args.schedule}, {len(dag.nodes)} computations, {len(dag.edges)} edges, "
          f"frequencies {prof.frequencies} MHz")
    base = P.uniform(dag, prof)
    print(_line("all at max frequency", base, base))
    target = base.time_s if args.straggler_time is None else args.straggler_time
    mode = "intrinsic" if args.straggler_time is None else "extrinsic"
    P.choose([base], target)  # below the fastest time: error
    front, chosen, exact_pts = [], None, []
    if "greedy" in args.solver:
        t0 = time.perf_counter()
        g = P.greedy_plan(dag, prof, target)
        print(_line(f"{mode} plan (greedy, {time.perf_counter() - t0:.2f} s)", g, base))
        chosen = g
    if "lowtime" in args.solver:
        t0 = time.perf_counter()
        front = P.frontier(dag, prof, unit_s=args.unit_s)
        print(f"frontier (lowtime Phillips-Dessouky): {len(front)} points in "
              f"{time.perf_counter() - t0:.1f} s")
        step = max(1, len(front) // 10)
        for p in front[::step] + ([front[-1]] if (len(front) - 1) % step else []):
            print("  " + _line("", p, base).strip())
        lt = P.choose(front, target)
        print(_line(f"{mode} plan (lowtime frontier)", lt, base))
        if chosen is None or lt.energy_j < chosen.energy_j:
            chosen = lt
    if "exact" in args.solver:
        from speechlm.runtime.energy.exact import exact_plan
        t0 = time.perf_counter()
        ex = exact_plan(dag, prof, target, time_limit_s=args.milp_time_limit)
        print(_line(f"{mode} plan (exact MILP, {time.perf_counter() - t0:.1f} s)", ex, base))
        if chosen is None or ex.energy_j < chosen.energy_j:
            chosen = ex
        if args.exact_points > 0:
            slow = P.uniform(dag, prof, min(prof.frequencies)).time_s
            t0 = time.perf_counter()
            for i in range(args.exact_points):
                tgt = base.time_s + (slow - base.time_s) * (i + 1) / args.exact_points
                p = exact_plan(dag, prof, tgt, time_limit_s=args.milp_time_limit)
                if p is not None:
                    exact_pts.append(p)
            print(f"exact frontier samples ({args.exact_points} targets, "
                  f"{time.perf_counter() - t0:.1f} s):")
            for p in [ex, *exact_pts]:
                print("  " + _line("", p, base).strip())
            exact_pts.insert(0, ex)
    print(f"chosen {mode} plan for target {target:.4f} s, frequencies per computation:")
    print(_summary(dag, chosen))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(P.plan_to_json(dag, prof, chosen, mode, target), f, indent=1)
        print(f"plan written to {args.out}")
    if args.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        if front:
            ax.plot([p.time_s for p in front], [p.energy_j for p in front], ".-",
                    label="frontier (lowtime)")
        if exact_pts:
            ax.plot([p.time_s for p in exact_pts], [p.energy_j for p in exact_pts], "x",
                    label="exact (MILP) at sampled targets")
        ax.plot([base.time_s], [base.energy_j], "rs", label="all at max frequency")
        ax.plot([chosen.time_s], [chosen.energy_j], "g*", ms=12, label=f"{mode} plan")
        ax.set_xlabel("iteration time (s)")
        ax.set_ylabel("energy (J)")
        tag = " (MODELLED profile)" if prof.source == "modelled" else ""
        ax.set_title(f"{args.schedule} S={args.stages} M={args.microbatches}{tag}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.png, dpi=120)
        print(f"plot written to {args.png}")
    return 0


def _current_clock_mhz(device) -> int:
    import torch
    if device.type == "cuda":
        try:
            return int(torch.cuda.clock_rate(device))
        except Exception as e:  # no NVML reading: say so
            log.info("GPU clock unreadable (%s)", e)
            return 1
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq") as f:
            return int(f.read()) // 1000
    except OSError:
        return 1  # unknown: the note says so


def profile_cmd(args: argparse.Namespace) -> int:
    import torch

    from speechlm.runtime.energy.meter import EnergyMeter
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(1024, 4096), torch.nn.GELU(),
                                torch.nn.Linear(4096, 1024)).to(dev)
    x = torch.randn(256, 1024, device=dev)
    meter = EnergyMeter()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    results = {}
    for kind in ("forward", "backward"):
        outs = [model(x).square().mean() for _ in range(args.iters)] if kind == "backward" else []
        sync()
        meter.begin()
        t0 = time.perf_counter()
        for i in range(args.iters):
            if kind == "forward":
                with torch.no_grad():
                    model(x)
            else:
                outs[i].backward()
        sync()
        secs = (time.perf_counter() - t0) / args.iters
        joules = meter.end()
        results[f"stage0.{kind}"] = (secs, None if joules is None else joules / args.iters)
    clock = _current_clock_mhz(dev)
    prof = Profile({c: [Option(clock, t, e)] for c, (t, e) in results.items()},
                   source="measured-at-current-clock", device=str(dev),
                   note=("one frequency: the current clock (never changed here)"
                         + ("; clock unknown, written as 1 MHz" if clock == 1 else "")
                         + "; energy null = zeus read nothing"))
    for c, (t, e) in results.items():
        print(f"{c:18s} {t * 1e3:8.2f} ms  energy {'null' if e is None else f'{e:.3f} J'}"
              f"  at {clock} MHz ({dev})")
    if args.out:
        prof.save(args.out)
        print(f"profile written to {args.out}")
    return 0


def run(args: argparse.Namespace) -> int:
    return plan_cmd(args) if args.action == "plan" else profile_cmd(args)


def main(argv: list[str] | None = None) -> int:
    return command_main("speechlm energy", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
