"""Perseus planning: DAG builders, profile validation, frontier vs exhaustive, governor."""
import logging
import random

import pytest

from speechlm.runtime.energy import dag as D
from speechlm.runtime.energy import exact as X
from speechlm.runtime.energy import planner as P
from speechlm.runtime.energy.governor import FrequencyDriver, PerseusGovernor, Step
from speechlm.runtime.energy.profile import Option, Profile, ProfileError, from_json, modelled


def unit_profile(stages, fwd=1.0, bwd=2.0):
    return Profile({f"stage{s}.{k}": [Option(1000, t, 1.0)]
                    for s in range(stages) for k, t in (("forward", fwd), ("backward", bwd))})


@pytest.mark.parametrize("build", [D.gpipe, D.one_f_one_b])
@pytest.mark.parametrize("s,m", [(1, 1), (2, 3), (4, 8), (3, 2)])
def test_pipeline_makespan_is_the_textbook_one(build, s, m):
    dag = build(s, m)
    assert len(dag.nodes) == 2 * s * m
    prof = unit_profile(s)
    # equal stages, f=1, b=2: both schedules take (M + S - 1) * (f + b)
    assert P.uniform(dag, prof).time_s == pytest.approx(3 * (m + s - 1))


def test_1f1b_device_order():
    dag = D.one_f_one_b(4, 8)
    order = [n for n in dag.topological_order() if n.startswith("s0.")]
    assert order[:6] == ["s0.f0", "s0.f1", "s0.f2", "s0.f3", "s0.b0", "s0.f4"]
    last = [n for n in dag.topological_order() if n.startswith("s3.")]
    assert last[:4] == ["s3.f0", "s3.b0", "s3.f1", "s3.b1"]


def test_data_parallel_and_decode_loop():
    dp = D.data_parallel(D.gpipe(2, 2), 3)
    assert len(dp.nodes) == 24 and "r2/s1.b1" in dp.nodes
    assert dp.nodes["r1/s0.f0"].device == "r1/gpu0"
    loop = D.decode_loop(3, cpu_phase=True)
    assert ("decode0.cpu", "decode1.gpu") in loop.edges
    assert loop.computations() == {"prefill", "decode.gpu", "decode.cpu"}
    prof = Profile({"prefill": [Option(1, 5.0, 1.0)], "decode.gpu": [Option(1, 1.0, 1.0)],
                    "decode.cpu": [Option(1, 2.0, 1.0)]})
    assert P.uniform(loop, prof).time_s == 5 + 3 * 2  # the CPU phase is the critical one


def test_cycle_is_named():
    dag = D.DAG()
    for n in "abc":
        dag.add(n, "c")
    dag.edge("a", "b")
    dag.edge("b", "c")
    dag.edge("c", "b")
    with pytest.raises(D.CycleError, match="'b'"):
        dag.topological_order()


def _doc(comps):
    return {"format": "speechlm-energy-profile", "version": 1, "computations": comps}


@pytest.mark.parametrize("comps,match", [
    ({"fwd": {"1000": {"time_s": 2, "energy_j": 1}, "1400": {"time_s": 1, "energy_j": 2}},
      "bwd": {"1000": {"time_s": 2, "energy_j": 1}}}, r"'bwd'.*missing \[1400\]"),
    ({"fwd": {"1000": {"time_s": 1, "energy_j": 1}, "1400": {"time_s": 2, "energy_j": 2}}},
     r"'fwd'.*not monotone"),
    ({"fwd": {"1000": {"time_s": -1, "energy_j": 1}}}, r"'fwd' at 1000 MHz: time"),
    ({"fwd": {"1000": {"time_s": 1, "energy_j": -3}}}, r"'fwd' at 1000 MHz: energy"),
    ({"fwd": {"1000": {"time_s": 1}}}, r"'fwd' frequency '1000'"),
])
def test_profile_validation_names_the_computation(comps, match):
    with pytest.raises(ProfileError, match=match):
        from_json(_doc(comps), origin="p.json")


def test_profile_roundtrip_and_modelled_label(tmp_path):
    prof = modelled("gpt3", stages=2)
    assert prof.source == "modelled" and "MODELLED" in prof.note
    prof.save(tmp_path / "p.json")
    from speechlm.runtime.energy.profile import load
    again = load(tmp_path / "p.json")
    assert again.computations == prof.computations and again.source == "modelled"
    with pytest.raises(ProfileError, match="version"):
        from_json({**prof.to_json(), "version": 99})


def random_case(seed):
    rng = random.Random(seed)
    n = rng.randint(2, 8)
    dag = D.DAG()
    for i in range(n):
        dag.add(f"n{i}", f"c{i}")
    for i in range(n):
        for j in range(i + 1, n):
            if rng.random() < 0.3:
                dag.edge(f"n{i}", f"n{j}")
    comps = {}
    for i in range(n):
        ts = sorted(rng.sample(range(2, 12), 3), reverse=True)
        es = sorted(rng.sample(range(5, 40), 3))
        comps[f"c{i}"] = [Option(f, float(t), float(e))
                          for f, t, e in zip((1000, 1200, 1400), ts, es, strict=True)]
    return dag, Profile(comps)


def points(front):
    return [(p.time_s, p.energy_j) for p in front]


@pytest.mark.parametrize("seed", range(12))
def test_exact_frontier_equals_exhaustive(seed):
    dag, prof = random_case(seed)
    assert points(X.exact_frontier(dag, prof)) == points(P.exhaustive_frontier(dag, prof))


@pytest.mark.parametrize("seed", range(12))
def test_lowtime_frontier_is_priced_exactly_and_never_beats_exhaustive(seed, caplog):
    dag, prof = random_case(seed)
    best = P.exhaustive_frontier(dag, prof)
    with caplog.at_level(logging.ERROR):
        front = P.frontier(dag, prof, unit_s=1.0)
    assert front[0].time_s == best[0].time_s  # the all-fastest end is always there
    for p in front:
        assert P.price(dag, prof, p.freqs) == p
        optimum = min(b.energy_j for b in best if b.time_s <= p.time_s)
        assert p.energy_j >= optimum


@pytest.mark.parametrize("seed", range(12))
def test_greedy_meets_the_target_and_never_beats_exhaustive(seed):
    dag, prof = random_case(seed)
    best = P.exhaustive_frontier(dag, prof)
    for target in (best[0].time_s, (best[0].time_s + best[-1].time_s) / 2, best[-1].time_s):
        g = P.greedy_plan(dag, prof, target)
        assert g.time_s <= target + 1e-9
        assert g.energy_j >= P.choose(best, target).energy_j
    with pytest.raises(P.PlanError, match="below the fastest"):
        P.greedy_plan(dag, prof, best[0].time_s - 1)


def test_exact_plans_save_energy_on_a_modelled_pipeline():
    dag, prof = D.one_f_one_b(2, 3), modelled("gpt3", stages=2)
    base = P.uniform(dag, prof)
    intrinsic = X.exact_plan(dag, prof, base.time_s)
    assert intrinsic.time_s <= base.time_s + 1e-9
    assert intrinsic.energy_j < base.energy_j  # the lighter stage slows down for free
    extrinsic = X.exact_plan(dag, prof, base.time_s * 1.2)
    assert extrinsic.energy_j < intrinsic.energy_j
    assert X.exact_plan(dag, prof, base.time_s * 0.9) is None


def test_plan_modes_and_bad_target():
    dag, prof = random_case(3)
    front = P.exhaustive_frontier(dag, prof)
    mode, chosen = P.plan(front)
    assert mode == "intrinsic" and chosen == front[0]
    mode, slower = P.plan(front, straggler_s=front[-1].time_s + 5)
    assert mode == "extrinsic" and slower == front[-1]
    with pytest.raises(P.PlanError, match="below the fastest"):
        P.choose(front, front[0].time_s * 0.9)


class RecordingDriver(FrequencyDriver):
    """Stands in for the GPU: records clock calls (no model output is faked)."""

    def __init__(self):
        self.calls = []

    def set_frequency(self, freq_mhz):
        self.calls.append(("set", freq_mhz))

    def restore(self):
        self.calls.append(("restore",))


def plan_doc():
    dag, prof = D.decode_loop(2), Profile({"prefill": [Option(1000, 2.0, 3.0),
                                                       Option(1400, 1.0, 4.0)],
                                           "decode": [Option(1000, 2.0, 1.0),
                                                      Option(1400, 1.0, 2.0)]})
    chosen = P.choose(P.exhaustive_frontier(dag, prof), 4.0)
    return P.plan_to_json(dag, prof, chosen, "extrinsic", 4.0)


def test_governor_dry_run_changes_nothing():
    drv = RecordingDriver()
    gov = PerseusGovernor(plan_doc(), dry_run=True, driver=drv)
    with gov:
        for phase in ("prefill", "decode", "decode", "decode"):
            gov.begin(Step(phase, batch_size=1, num_tokens=1))
    assert drv.calls == []
    assert [t[0] for t in gov.trace] == ["prefill", "decode0", "decode1", "decode2"]
    # 3 sequential 1-2 s steps by 4 s: one runs slow (1000 MHz), two fast
    assert sorted(t[1] for t in gov.trace[:3]) == [1000, 1400, 1400]


def test_governor_real_mode_needs_permission_and_restores_on_error():
    with pytest.raises(PermissionError):
        PerseusGovernor(plan_doc(), dry_run=False, driver=RecordingDriver())
    drv = RecordingDriver()
    with pytest.raises(RuntimeError, match="boom"):
        with PerseusGovernor(plan_doc(), dry_run=False, allow_clock_changes=True,
                             driver=drv) as gov:
            gov.begin(Step("prefill", batch_size=1, num_tokens=4))
            raise RuntimeError("boom")
    assert drv.calls[0][0] == "set" and drv.calls[-1] == ("restore",)


def test_bad_plan_file_is_named(tmp_path):
    p = tmp_path / "plan.json"
    p.write_text('{"format": "speechlm-energy-plan", "version": 1, "nodes": {"x": {}}}')
    with pytest.raises(P.PlanError, match="plan.json: node 'x'"):
        PerseusGovernor(str(p))


def test_perseus_governor_in_the_runtime_dry_run_changes_nothing(tmp_path):
    import json

    from speechlm.runtime import SamplingParams
    from speechlm.testing.llm import tiny_llm

    dag = D.decode_loop(3)
    prof = Profile({"prefill": [Option(1000, 2.0, 3.0), Option(1400, 1.0, 4.0)],
                    "decode": [Option(1000, 2.0, 1.0), Option(1400, 1.0, 2.0)]})
    path = tmp_path / "plan.json"
    chosen = P.choose(P.exhaustive_frontier(dag, prof), 5.0)
    path.write_text(json.dumps(P.plan_to_json(dag, prof, chosen, "extrinsic", 5.0)))
    llm = tiny_llm("llama", energy_governor="perseus",
                   energy_governor_conf={"plan": str(path)})
    ref = tiny_llm("llama", energy_governor="none")
    p = SamplingParams(max_tokens=5)
    texts = ["the cat sat", "a dog ran far"]
    assert [c.token_ids for c in llm.generate(texts, p)] == \
        [c.token_ids for c in ref.generate(texts, p)]
    gov = llm.engine.governor
    assert [t[0] for t in gov.trace] == ["prefill", "decode0", "decode1", "decode2", "decode3"]
    assert [t[1] for t in gov.trace[:4]] == [chosen.freqs[n] for n in
                                             ("prefill", "decode0", "decode1", "decode2")]


def test_energy_doctests():
    import doctest

    import speechlm.runtime.energy as E
    for mod in (E, D):
        assert doctest.testmod(mod).failed == 0
