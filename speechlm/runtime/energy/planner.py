"""The iteration time–energy Pareto frontier of a computation DAG, and a plan for a target.

``frontier`` runs the Phillips–Dessouky iterative min-cut time–cost tradeoff of ``lowtime``
(0.3.0, by the Perseus authors): it starts with every computation at its slowest
Pareto-optimal frequency and shortens the critical paths one time quantum (``unit_s``)
at a time, at the least energy increase a min cut finds. Each computation's energy vs
quantized time is handed to lowtime as the piecewise-linear curve through its profile
points (lowtime's own exponential fit often fails on 3-7 points). Every plan is then
re-priced exactly from the profile (real times, real energies; no fitted values), and the
frontier keeps the Pareto-optimal ones.

With discrete frequencies the problem is NP-hard, so this frontier is a heuristic;
``exhaustive_frontier`` is the exact reference for small DAGs (tests compare the two).

Energy counted: the computations' own energy. Idle (blocking) power while a GPU waits is
not modelled, so savings are those of the computations alone.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

from speechlm.core.errors import InputError
from speechlm.runtime.energy.dag import DAG
from speechlm.runtime.energy.profile import Option, Profile

log = logging.getLogger(__name__)
EPS = 1e-9
PANICS = 0  # times lowtime's solver panicked in this process (reported by the bench)


class PlanError(InputError):
    """An impossible plan request (e.g. a target time below the fastest possible)."""


@dataclass(frozen=True)
class Plan:
    """A frequency per node (MHz) and its exactly priced iteration ``time_s`` and ``energy_j``."""

    freqs: dict[str, int]
    time_s: float
    energy_j: float


def price(dag: DAG, profile: Profile, freqs: dict[str, int]) -> Plan:
    """Iteration time (longest path) and total energy of running ``dag`` at ``freqs``."""
    dur, energy = {}, 0.0
    for name, node in dag.nodes.items():
        by_f = {o.freq: o for o in profile.options(node.computation)}
        try:
            o = by_f[freqs[name]]
        except KeyError:
            raise PlanError(f"node {name!r}: no profile entry for {freqs.get(name)} MHz") from None
        dur[name] = o.time_s
        energy += o.energy_j or 0.0
    return Plan(dict(freqs), dag.makespan(dur), energy)


def uniform(dag: DAG, profile: Profile, freq: int | None = None) -> Plan:
    """Every node at ``freq`` (default: the maximum frequency): the baseline."""
    f = max(profile.frequencies) if freq is None else freq
    return price(dag, profile, dict.fromkeys(dag.nodes, f))


def pareto(plans: list[Plan]) -> list[Plan]:
    """Plans not beaten on both time and energy, fastest first."""
    out: list[Plan] = []
    for p in sorted(plans, key=lambda p: (p.time_s, p.energy_j)):
        if not out or p.energy_j < out[-1].energy_j - EPS:
            if out and abs(p.time_s - out[-1].time_s) <= EPS:
                continue
            out.append(p)
    return out


def exhaustive_frontier(dag: DAG, profile: Profile, max_plans: int = 200_000) -> list[Plan]:
    """Exact frontier by trying every frequency assignment (small DAGs only)."""
    names = list(dag.nodes)
    choices = [[o.freq for o in profile.options(dag.nodes[n].computation)] for n in names]
    total = 1
    for c in choices:
        total *= len(c)
    if total > max_plans:
        raise PlanError(f"exhaustive search over {total} plans > max_plans={max_plans}")
    plans = [price(dag, profile, dict(zip(names, combo, strict=True)))
             for combo in itertools.product(*choices)]
    return pareto(plans)


def _default_unit(dag: DAG, profile: Profile) -> float:
    # a quantum small enough to tell apart the options of the shortest computation
    gaps = []
    for c in dag.computations():
        ts = sorted({o.time_s for o in profile.options(c)})
        gaps += [b - a for a, b in zip(ts, ts[1:], strict=False)]
    return min(gaps) if gaps else 1.0


def frontier(dag: DAG, profile: Profile, unit_s: float | None = None) -> list[Plan]:
    """Pareto frontier with lowtime's Phillips–Dessouky solver (module docstring)."""
    try:
        import networkx as nx
        from lowtime.cost_model import CostModel
        from lowtime.operation import (
            CandidateExecutionOptions,
            DummyOperation,
            ExecutionOption,
            Operation,
            OperationSpec,
        )
        from lowtime.solver import PhillipsDessouky
    except ModuleNotFoundError as e:
        from speechlm.core.extras import MissingExtra
        raise MissingExtra(f"{e.name} is not installed: pip install 'speechlm[energy]'") from e

    class _Interp(CostModel):
        def __init__(self, cand) -> None:
            pts = sorted((o.quant_time, o.cost) for o in cand.options)
            self.ts, self.cs = [t for t, _ in pts], [c for _, c in pts]

        def __call__(self, quant_time: int) -> float:
            import numpy as np
            ts, cs = self.ts, self.cs
            if len(ts) == 1:
                return cs[0]
            if quant_time < ts[0]:  # extrapolate with the steepest end's slope
                return cs[0] + (ts[0] - quant_time) * (cs[0] - cs[1]) / (ts[1] - ts[0])
            return float(np.interp(quant_time, ts, cs))

    unit = unit_s or _default_unit(dag, profile)
    specs = {}
    for c in dag.computations():
        opts = [ExecutionOption(real_time=o.time_s, unit_time=unit, cost=o.energy_j, knob=o.freq)
                for o in profile.options(c)]
        cand = CandidateExecutionOptions(options=opts)
        specs[c] = OperationSpec(options=cand, cost_model=_Interp(cand))
    g = nx.DiGraph()
    ids = {n: i + 1 for i, n in enumerate(dag.nodes)}
    src, snk = 0, len(ids) + 1
    g.add_node(src, op=DummyOperation())
    g.add_node(snk, op=DummyOperation())
    for n, i in ids.items():
        g.add_node(i, op=Operation(spec=specs[dag.nodes[n].computation]))
    preds = dag.predecessors()
    succs = {u for u, _ in dag.edges}
    for n, i in ids.items():
        if not preds[n]:
            g.add_edge(src, i)
        if n not in succs:
            g.add_edge(i, snk)
    for u, v in dag.edges:
        g.add_edge(ids[u], ids[v])
    g.graph["source_node"], g.graph["sink_node"] = src, snk

    def current() -> Plan:
        return price(dag, profile, {n: g.nodes[i]["op"].assigned_knob for n, i in ids.items()})

    ops = [g.nodes[i]["op"] for i in ids.values()]
    for op in ops:  # the starting point: every computation at its slowest option
        op.duration = op.max_duration
    plans = [current()]
    steps = PhillipsDessouky(g).run()
    while True:
        try:
            next(steps)
        except StopIteration:
            break
        except BaseException as e:  # lowtime 0.3.0's Rust max-flow panics on some graphs
            if type(e).__name__ != "PanicException":
                raise
            log.warning("lowtime stopped early (%s); the frontier ends at its last plan "
                        "and the all-fastest plan", str(e).splitlines()[0])
            global PANICS
            PANICS += 1
            break
        plans.append(current())
    for op in ops:  # the other end, in case the last cuts stopped short of it
        op.duration = op.min_duration
    plans.append(current())
    return pareto(plans)


def choose(front: list[Plan], target_s: float) -> Plan:
    """Least-energy plan of the frontier that finishes by ``target_s``."""
    if not front:
        raise PlanError("empty frontier")
    fastest = min(p.time_s for p in front)
    if target_s < fastest - 1e-9 * max(1.0, fastest):
        raise PlanError(f"target time {target_s:.6g} s is below the fastest possible "
                        f"iteration time {fastest:.6g} s")
    ok = [p for p in front if p.time_s <= target_s + 1e-9 * max(1.0, target_s)]
    return min(ok, key=lambda p: (p.energy_j, p.time_s))


def plan(front: list[Plan], straggler_s: float | None = None) -> tuple[str, Plan]:
    """Intrinsic mode (target = fastest time) or extrinsic (target = the straggler's time)."""
    if straggler_s is None:
        return "intrinsic", choose(front, min(p.time_s for p in front))
    return "extrinsic", choose(front, straggler_s)


def option_at(profile: Profile, computation: str, freq: int) -> Option:
    for o in profile.options(computation):
        if o.freq == freq:
            return o
    raise PlanError(f"computation {computation!r} has no option at {freq} MHz")


PLAN_FORMAT, PLAN_VERSION = "speechlm-energy-plan", 1


def plan_to_json(dag: DAG, profile: Profile, chosen: Plan, mode: str, target_s: float) -> dict:
    """The plan file the governor reads: per node its computation, frequency, prediction."""
    nodes = {}
    for name, node in dag.nodes.items():
        o = option_at(profile, node.computation, chosen.freqs[name])
        nodes[name] = {"computation": node.computation, "device": node.device,
                       "freq": o.freq, "time_s": o.time_s, "energy_j": o.energy_j}
    return {"format": PLAN_FORMAT, "version": PLAN_VERSION, "mode": mode,
            "target_s": target_s, "time_s": chosen.time_s, "energy_j": chosen.energy_j,
            "profile_source": profile.source, "nodes": nodes}


def check_plan_json(obj: dict, origin: str) -> dict[str, dict]:
    """The ``nodes`` of a plan file, after checking format, version and fields."""
    if not isinstance(obj, dict) or obj.get("format") != PLAN_FORMAT:
        raise PlanError(f"{origin}: not a speechlm energy plan (format != {PLAN_FORMAT!r})")
    if obj.get("version") != PLAN_VERSION:
        raise PlanError(f"{origin}: plan version {obj.get('version')!r}, want {PLAN_VERSION}")
    nodes = obj.get("nodes")
    if not isinstance(nodes, dict) or not nodes:
        raise PlanError(f"{origin}: field 'nodes' must be a non-empty object")
    for name, v in nodes.items():
        if not isinstance(v, dict) or not isinstance(v.get("freq"), int) or v["freq"] <= 0:
            raise PlanError(f"{origin}: node {name!r}: want a positive integer 'freq' (MHz)")
    return nodes


def greedy_plan(dag: DAG, profile: Profile, target_s: float) -> Plan:
    """A fast valid plan for ``target_s`` (one pass; a heuristic, not optimal).

    Latest finish times are computed with every node at its fastest option; then, in
    topological order, each node takes its least-energy option that still finishes by its
    latest finish, given where its predecessors actually finished. Every node keeps within
    its window, so the plan meets the target; earlier nodes get first pick of the slack.
    """
    order = dag.topological_order()
    preds = dag.predecessors()
    succ: dict[str, list[str]] = {n: [] for n in dag.nodes}
    for u, v in dag.edges:
        succ[u].append(v)
    opts = {n: profile.options(dag.nodes[n].computation) for n in dag.nodes}
    fast = {n: min(o.time_s for o in opts[n]) for n in dag.nodes}
    if dag.makespan(fast) > target_s + 1e-9 * max(1.0, target_s):
        raise PlanError(f"target time {target_s:.6g} s is below the fastest possible "
                        f"iteration time {dag.makespan(fast):.6g} s")
    latest: dict[str, float] = {}
    for n in reversed(order):
        latest[n] = min((latest[s] - fast[s] for s in succ[n]), default=target_s)
    finish: dict[str, float] = {}
    freqs: dict[str, int] = {}
    for n in order:
        start = max((finish[p] for p in preds[n]), default=0.0)
        room = latest[n] - start + 1e-12 * max(1.0, target_s)
        ok = [o for o in opts[n] if o.time_s <= room]
        best = min(ok, key=lambda o: (o.energy_j or 0.0, o.time_s))
        freqs[n], finish[n] = best.freq, start + best.time_s
    return price(dag, profile, freqs)
