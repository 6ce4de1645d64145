"""Exact plans by mixed-integer programming (scipy's HiGHS), to check and complete lowtime.

For a target time T: one binary x[n,k] per node n and frequency option k, a start time
s[n] per node, and

    minimise   sum e[n,k] x[n,k]
    subject to sum_k x[n,k] = 1                         (one frequency per node)
               s[v] >= s[u] + sum_k t[u,k] x[u,k]       (every edge u -> v)
               s[n] +  sum_k t[n,k] x[n,k] <= T         (everything done by T)

``exact_frontier`` walks the whole frontier by the epsilon-constraint method: solve for
the slowest useful T, tighten T just below the plan found, repeat until infeasible.
"""

from __future__ import annotations

import numpy as np

from speechlm.runtime.energy.dag import DAG
from speechlm.runtime.energy.planner import EPS, Plan, PlanError, pareto, price, uniform
from speechlm.runtime.energy.profile import Profile


def exact_plan(dag: DAG, profile: Profile, target_s: float,
               time_limit_s: float | None = None) -> Plan | None:
    """Least-energy plan finishing by ``target_s``; None if there is none."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import lil_matrix

    names = list(dag.nodes)
    opts = [profile.options(dag.nodes[n].computation) for n in names]
    xi: list[list[int]] = []
    nx_ = 0
    for o in opts:
        xi.append(list(range(nx_, nx_ + len(o))))
        nx_ += len(o)
    si = {n: nx_ + i for i, n in enumerate(names)}
    nv = nx_ + len(names)
    idx = {n: i for i, n in enumerate(names)}
    rows = len(names) * 2 + len(dag.edges)
    a = lil_matrix((rows, nv))
    lo, hi = np.empty(rows), np.empty(rows)
    r = 0
    for i, n in enumerate(names):
        for j, k in enumerate(xi[i]):
            a[r, k] = 1.0
            a[r + 1, k] = opts[i][j].time_s
        lo[r], hi[r] = 1.0, 1.0
        a[r + 1, si[n]] = 1.0
        lo[r + 1], hi[r + 1] = -np.inf, target_s
        r += 2
    for u, v in sorted(dag.edges):
        i = idx[u]
        a[r, si[v]] = 1.0
        a[r, si[u]] = -1.0
        for j, k in enumerate(xi[i]):
            a[r, k] = -opts[i][j].time_s
        lo[r], hi[r] = 0.0, np.inf
        r += 1
    cost = np.zeros(nv)
    for i in range(len(names)):
        for j, k in enumerate(xi[i]):
            cost[k] = opts[i][j].energy_j
    integrality = np.zeros(nv)
    integrality[:nx_] = 1
    ub = np.full(nv, np.inf)
    ub[:nx_] = 1.0
    res = milp(cost, constraints=LinearConstraint(a.tocsr(), lo, hi), integrality=integrality,
               bounds=Bounds(np.zeros(nv), ub),
               options={"time_limit": time_limit_s} if time_limit_s else None)
    if res.x is None:
        if res.status == 2:  # infeasible
            return None
        raise PlanError(f"MILP solver stopped without a plan: {res.message}")
    freqs = {n: opts[i][int(np.argmax(res.x[xi[i]]))].freq for i, n in enumerate(names)}
    return price(dag, profile, freqs)


def exact_frontier(dag: DAG, profile: Profile, max_points: int = 10_000) -> list[Plan]:
    """The exact time–energy frontier (epsilon-constraint over ``exact_plan``)."""
    slow = uniform(dag, profile, min(profile.frequencies))
    fast_t = uniform(dag, profile).time_s
    plans: list[Plan] = []
    target = slow.time_s  # times fall with frequency: all-slowest is the slowest plan
    while target >= fast_t - EPS and len(plans) < max_points:
        p = exact_plan(dag, profile, target)
        if p is None:
            break
        # an equally cheap faster plan, if any, is found by the next solve; ``pareto`` keeps it.
        # The step is above HiGHS's feasibility tolerance, below any real time difference.
        plans.append(p)
        target = min(target, p.time_s) - 1e-6 * max(1.0, p.time_s)
    return pareto(plans)
