"""Fiddler expert offload and its baselines: offloaded logits equal the plain model's,
placements fit their budget, the latency model decides as its measurements say.
The CUDA tests at the end run under ``-m gpu``."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from speechlm.runtime import LLM, SamplingParams
from speechlm.runtime.moe import build_executor
from speechlm.runtime.moe.baselines import apply_accelerate_offload
from speechlm.runtime.moe.fiddler import FiddlerExecutor
from speechlm.runtime.moe.latency import LatencyModel
from speechlm.runtime.moe.offload import OffloadConfig, apply_moe_offload, packed_available
from speechlm.runtime.moe.placement import (
    GB,
    ModelSizes,
    Placement,
    measure_popularity,
    plan_placement,
)
from speechlm.testing.llm import save_tiny_model, tiny_model

IDS = torch.tensor([[1, 5, 6, 7, 8, 9, 10], [1, 11, 12, 13, 14, 15, 16]])  # (B=2, T=7)
CALIB = list(range(4, 120))
# transformers >= 5.2x calls the cache argument ``cache``; older releases ``past_key_values``
CACHE_KW = (
    "cache"
    if "cache" in inspect.signature(tiny_model("mixtral").forward).parameters
    else "past_key_values"
)


def qwen3_moe_model(seed: int = 0):
    """A 2-layer Qwen3-MoE (not among speechlm.testing's families), seeded like tiny_model."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        "qwen3_moe",
        vocab_size=256,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=128,
        moe_intermediate_size=32,
        num_experts=4,
        num_experts_per_tok=2,
        norm_topk_prob=True,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        max_position_embeddings=128,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 and "norm" not in name:
                p.normal_(0.0, 0.08)
    return model.eval()


def build(family: str):
    return qwen3_moe_model() if family == "qwen3_moe" else tiny_model(family)


def latency(cpu_s, device_s=None, transfer_s=None, copy_s=1e-3, tokens=None) -> LatencyModel:
    tokens = tokens or tuple(range(1, len(cpu_s) + 1))
    return LatencyModel(
        tokens=tuple(tokens),
        cpu_s=tuple(cpu_s),
        device_s=tuple(device_s or [0.0] * len(cpu_s)),
        transfer_s=tuple(transfer_s or [0.0] * len(cpu_s)),
        copy_s=copy_s,
        expert_bytes=1,
    )


ALWAYS_CPU = latency([0.0], copy_s=1.0)
ALWAYS_COPY = latency([1.0], copy_s=0.0)
# one token -> CPU, two or more -> copy: both kinds in one block
SPLIT = latency([0.0, 1.0], device_s=[0.1, 0.1], copy_s=0.1)


def budget_gb(model, n_resident: int, staging: int = 2) -> float:
    s = ModelSizes.of(model)
    return (s.non_expert_bytes + (n_resident + staging) * s.expert_bytes) / GB


def offload(model, name, n_resident, *, latency_model=None, **conf):
    conf = {"device": "cpu", "latency_tokens": (1, 4), "latency_repeats": 1, **conf}
    budget = budget_gb(model, n_resident, conf.get("staging_slots", 2))
    config = OffloadConfig(gpu_memory_gb=budget, **conf)
    extra = {"latency": latency_model} if latency_model is not None else {}
    return apply_moe_offload(model, name, config, calibration_ids=CALIB, **extra)


def logits_prefill_then_decode(model):
    """Logits (B, T+1, V) of a 6-token prefill, then 1 and then 1 decode token, cached."""
    from transformers import DynamicCache

    cache, outs = DynamicCache(), []
    with torch.no_grad():
        for lo, hi in ((0, 5), (5, 6), (6, 7)):
            outs.append(model(input_ids=IDS[:, lo:hi], **{CACHE_KW: cache}).logits)
    return torch.cat(outs, dim=1)


CASES = [
    ("fiddler", ALWAYS_CPU, {}),
    ("fiddler", ALWAYS_COPY, {}),
    ("fiddler", SPLIT, {"staging_slots": 1}),  # one slot: every copy reuses it
    ("fiddler", SPLIT, {"overlap": True}),  # the CPU experts in the worker thread
    ("fiddler", None, {}),  # measured on this machine
    ("lru_experts", None, {}),
    ("cpu_experts", None, {}),
]


@pytest.mark.parametrize("family", ["mixtral", "qwen2_moe", "qwen3_moe"])
@pytest.mark.parametrize("n_resident", [0, 3, 8])
@pytest.mark.parametrize(
    "name,lat,conf",
    CASES,
    ids=["cpu", "copy", "split1slot", "overlap", "measured", "lru", "allcpu"],
)
def test_offloaded_logits_equal_plain(family, n_resident, name, lat, conf):
    plain = build(family)
    with torch.no_grad():
        expected = plain(input_ids=IDS, use_cache=False).logits  # (B, T, V)
    model = build(family)
    ex = offload(model, name, n_resident, latency_model=lat, **conf)
    assert ex.placement.num_resident() == n_resident
    with torch.no_grad():
        torch.testing.assert_close(
            model(input_ids=IDS, use_cache=False).logits, expected, atol=2e-5, rtol=1e-5
        )
        one = model(input_ids=IDS[:1, :1], use_cache=False).logits  # a single token
    torch.testing.assert_close(one, expected[:1, :1], atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(logits_prefill_then_decode(model), expected, atol=2e-5, rtol=1e-5)
    if name == "fiddler" and lat is not None and n_resident < 8:
        kinds = {k for k, v in ex.stats.as_dict().items() if v and k != "steps"}
        want = {"cpu": {"cpu"}, "copy": {"copy"}}.get(
            "cpu" if lat is ALWAYS_CPU else "copy" if lat is ALWAYS_COPY else "", {"cpu", "copy"}
        )
        assert want <= kinds
    if n_resident == 8 and name == "fiddler":  # everything resident: nothing moves
        assert ex.stats.cpu == ex.stats.copy == 0


@pytest.mark.skipif(not packed_available(), reason="torch without oneDNN")
@pytest.mark.parametrize("name", ["fiddler", "cpu_experts"])
def test_packed_cpu_layout_matches(name):
    plain = tiny_model("mixtral")
    with torch.no_grad():
        expected = plain(input_ids=IDS, use_cache=False).logits
    model = tiny_model("mixtral")
    lat = ALWAYS_CPU if name == "fiddler" else None
    ex = offload(model, name, 2, latency_model=lat, cpu_layout="packed")
    with torch.no_grad():
        got = model(input_ids=IDS, use_cache=False).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)  # oneDNN sums differently
    assert ex.stats.cpu > 0


# ---- the latency model ------------------------------------------------------------------
def test_latency_model_decisions_follow_measurements():
    # cpu: 10 ms at 1 token, 50 ms at 9, 130 ms at 25 (then the last slope)
    lm = latency(
        [0.010, 0.050, 0.130],
        device_s=[0.001, 0.001, 0.002],
        transfer_s=[0.0001, 0.0002, 0.0004],
        copy_s=0.030,
        tokens=(1, 9, 25),
    )
    for n in (1, 2, 3, 5, 8, 9, 16, 25, 40, 1000):
        cpu = (
            0.010 + 0.0001 + (n - 1) * (0.040 + 0.0001) / 8
            if n <= 9
            else 0.050 + 0.0002 + (n - 9) * (0.080 + 0.0002) / 16
        )
        copy = 0.030 + (0.001 if n <= 9 else 0.001 + (n - 9) * 0.001 / 16)
        assert lm.cpu_cost(n) == pytest.approx(cpu)
        assert lm.copy_cost(n) == pytest.approx(copy)
        assert lm.choose(n) == ("cpu" if cpu <= copy else "copy")
    assert lm.choose(1) == "cpu" and lm.choose(1000) == "copy"  # decode vs long prefill
    cross = lm.crossover()
    assert lm.choose(cross) == "copy" and lm.choose(cross - 1) == "cpu"
    # a slower copy (e.g. a narrower PCIe link) moves the crossover up
    slow = latency(lm.cpu_s, lm.device_s, lm.transfer_s, copy_s=0.090, tokens=lm.tokens)
    assert slow.crossover() > cross and slow.choose(cross) == "cpu"
    # a CPU that is never slower than the copy: always CPU
    assert latency([0.0, 0.0], copy_s=0.1).crossover() is None
    assert lm.copy_bytes_per_s == pytest.approx(1 / 0.030)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"cpu_s": (0.1,), "tokens": (1, 2)}, "one value per count"),
        ({"tokens": (2, 1)}, "increasing"),
        ({"copy_s": -1.0}, ">= 0"),
        ({"copy_s": math.nan}, ">= 0"),
    ],
)
def test_latency_model_rejects_bad_measurements(kwargs, match):
    base = dict(tokens=(1, 2), cpu_s=(0.1, 0.2), device_s=(0, 0), transfer_s=(0, 0), copy_s=0.1)
    with pytest.raises(ValueError, match=match):
        LatencyModel(**{**base, **kwargs}, expert_bytes=1)


def test_fiddler_plan_uses_placement_then_latency():
    model = tiny_model("mixtral")
    ex = offload(model, "fiddler", 3, latency_model=SPLIT)
    layer = 0
    resident = set(ex.placement.resident[layer])
    counts = [1, 2, 0, 5]
    plan = ex.plan(layer, counts)
    for e, n in enumerate(counts):
        if n == 0:
            assert e not in plan
        elif e in resident:
            assert plan[e] == "device"
        else:
            assert plan[e] == ("cpu" if n == 1 else "copy")


def test_measured_latency_model_is_sane():
    ex = offload(tiny_model("mixtral"), "fiddler", 0, latency_tokens=(1, 2, 8))
    lm = ex.latency
    assert lm.tokens == (1, 2, 8) and lm.copy_s > 0 and all(t > 0 for t in lm.cpu_s)
    assert lm.expert_bytes == ex.placement.expert_bytes
    assert "copy wins" in lm.describe()


# ---- placement ----------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["mixtral", "qwen2_moe"])
def test_placement_respects_budget_and_popularity(family):
    model = build(family)
    sizes = ModelSizes.of(model)
    pop = measure_popularity(model, CALIB)
    top_k = model.config.num_experts_per_tok
    assert all(sum(c) == len(CALIB) * top_k for c in pop.values())  # every token routed
    ranked = sorted((-c, la, e) for la, cs in pop.items() for e, c in enumerate(cs))
    fixed = sizes.non_expert_bytes + 2 * sizes.expert_bytes
    for extra in (
        0,
        1,
        sizes.expert_bytes - 1,
        3 * sizes.expert_bytes + 7,
        100 * sizes.expert_bytes,
    ):
        budget = fixed + extra
        p = plan_placement(sizes, budget, pop, staging_slots=2, calibration_ids=CALIB)
        n = min(extra // sizes.expert_bytes, 8)
        assert p.num_resident() == n and p.device_bytes() <= budget
        if n < 8:  # maximal: one more expert would not fit
            assert p.device_bytes() + sizes.expert_bytes > budget
        chosen = {(la, e) for la, es in enumerate(p.resident) for e in es}
        assert chosen == {(la, e) for _, la, e in ranked[:n]}  # the most popular ones
        assert p.popularity == tuple(tuple(pop[i]) for i in range(2))
    ex = offload(model, "fiddler", 3, latency_model=ALWAYS_CPU)
    assert sizes.non_expert_bytes + ex.device_bytes() <= ex.placement.budget_bytes


def test_reserve_counts_against_the_budget():
    model = tiny_model("mixtral")
    sizes = ModelSizes.of(model)
    pop = measure_popularity(model, CALIB)
    budget = sizes.non_expert_bytes + 6 * sizes.expert_bytes
    assert plan_placement(sizes, budget, pop).num_resident() == 4
    p = plan_placement(sizes, budget, pop, reserve_bytes=2 * sizes.expert_bytes)
    assert p.num_resident() == 2 and p.device_bytes() == budget


def test_placement_is_stored_with_its_popularity(tmp_path):
    path = tmp_path / "placement.json"
    model = tiny_model("mixtral")
    conf = dict(device="cpu", placement_path=str(path), latency_tokens=(1,), latency_repeats=1)
    ex = apply_moe_offload(
        model,
        "fiddler",
        OffloadConfig(gpu_memory_gb=budget_gb(model, 3), **conf),
        calibration_ids=CALIB,
        latency=ALWAYS_CPU,
    )
    stored = Placement.load(path)
    assert stored == ex.placement and stored.calibration_tokens == len(CALIB)
    # another budget: re-planned from the stored popularity, no calibration text needed
    other = tiny_model("mixtral")
    ex2 = apply_moe_offload(
        other,
        "fiddler",
        OffloadConfig(gpu_memory_gb=budget_gb(other, 5), **conf),
        latency=ALWAYS_CPU,
    )
    assert ex2.placement.num_resident() == 5
    assert ex2.placement.popularity == stored.popularity
    assert ex2.placement.calibration_sha256 == stored.calibration_sha256
    with pytest.raises(ValueError, match="another model"):
        apply_moe_offload(
            tiny_model("qwen2_moe"),
            "fiddler",
            OffloadConfig(gpu_memory_gb=1.0, **conf),
            latency=ALWAYS_CPU,
        )


# ---- bad input ----------------------------------------------------------------------------
def test_bad_budgets_are_clear_errors():
    model = tiny_model("mixtral")
    sizes = ModelSizes.of(model)
    with pytest.raises(ValueError, match="gpu_memory_gb must be >= 0"):
        OffloadConfig(gpu_memory_gb=-1.0)
    with pytest.raises(ValueError, match=">= 0"):
        plan_placement(sizes, -5, {0: [1] * 4, 1: [1] * 4})
    below = (sizes.non_expert_bytes - 1) / GB
    with pytest.raises(ValueError, match="below what must stay on the device: non-expert"):
        apply_moe_offload(
            model,
            "fiddler",
            OffloadConfig(gpu_memory_gb=below, device="cpu"),
            calibration_ids=CALIB,
        )
    # the refusal comes before anything moved: the model still runs as before
    assert "forward" not in vars(model.model.layers[0].mlp.experts)
    with pytest.raises(ValueError, match="no sparse-MoE"):
        apply_moe_offload(
            tiny_model("llama"), "fiddler", OffloadConfig(gpu_memory_gb=1.0, device="cpu")
        )
    with pytest.raises(ValueError, match="not an offload executor"):
        apply_moe_offload(model, "loop", OffloadConfig(gpu_memory_gb=1.0, device="cpu"))
    with pytest.raises(ValueError, match="staging_slots"):
        OffloadConfig(gpu_memory_gb=1.0, staging_slots=0)


# ---- through the runtime --------------------------------------------------------------------
def test_llm_from_pretrained_with_moe_offload(tmp_path):
    path = save_tiny_model(tmp_path / "mixtral", "mixtral")
    conf = {"latency_tokens": (1, 4), "latency_repeats": 1}
    ref = LLM.from_pretrained(path, measure_energy=False)
    sizes = ModelSizes.of(ref.model)
    gb = (sizes.non_expert_bytes + 5 * sizes.expert_bytes) / GB
    llm = LLM.from_pretrained(
        path,
        moe_offload="fiddler",
        gpu_memory_gb=gb,
        moe_offload_conf=conf,
        measure_energy=False,
    )
    assert isinstance(llm.moe_executor, FiddlerExecutor)
    assert llm.moe_executor.placement.num_resident() == 3
    texts = ["one two three four", "the water is good"]
    assert llm.score(texts) == pytest.approx(ref.score(texts), abs=1e-5)
    for p in (SamplingParams(max_tokens=6), SamplingParams(max_tokens=4, num_beams=3)):
        assert [c.token_ids for c in llm.generate(texts, p)] == [
            c.token_ids for c in ref.generate(texts, p)
        ]
    assert llm.moe_executor.stats.cpu + llm.moe_executor.stats.copy > 0
    with pytest.raises(ValueError, match="needs gpu_memory_gb"):
        LLM.from_pretrained(path, moe_offload="fiddler")
    with pytest.raises(ValueError, match="need moe_offload"):
        LLM.from_pretrained(path, gpu_memory_gb=4.0)
    with pytest.raises(ValueError, match="below what must stay"):
        LLM.from_pretrained(path, moe_offload="lru_experts", gpu_memory_gb=1e-6)


def test_lru_cache_evicts_least_recently_used():
    model = tiny_model("mixtral")
    ex = offload(model, "lru_experts", 0)  # capacity = 2 staging slots
    assert ex.capacity == 2 and len(ex.cache) == 0
    with torch.no_grad():
        model(input_ids=IDS, use_cache=False)
    assert len(ex.cache) == 2 and ex.misses >= 4  # 2 layers x >= 2 experts each
    hits = ex.hits
    last = list(ex.cache)[-1]
    layer = ex.layers[last[0]]
    k = torch.tensor([[last[1], list(ex.cache)[0][1]]])  # (N=1, K=2)
    hidden = torch.randn(1, 64)
    ex(layer.module, hidden, k, torch.tensor([[0.5, 0.5]]), layer_idx=last[0])
    assert ex.hits == hits + 1 + (list(ex.cache)[0][0] == last[0])
    assert list(ex.cache)[-1][0] == last[0]  # used keys move to the end


def test_registry_builds_offload_executors():
    model = tiny_model("mixtral")
    sizes = ModelSizes.of(model)
    pop = measure_popularity(model, CALIB)
    placement = plan_placement(sizes, sizes.non_expert_bytes + 4 * sizes.expert_bytes, pop)
    config = OffloadConfig(gpu_memory_gb=1.0, device="cpu")
    ex = build_executor("fiddler", {"placement": placement, "config": config})
    assert isinstance(ex, FiddlerExecutor) and ex.latency is None


def test_cpu_threads_apply_to_the_inline_cpu_experts():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        offload(tiny_model("mixtral"), "fiddler", 2, latency_model=ALWAYS_CPU, cpu_threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_accelerate_baseline_refuses_a_budget_that_holds_nothing():
    with pytest.raises(ValueError, match="puts no module on cuda"):
        apply_accelerate_offload(tiny_model("mixtral"), 1e-9, "cuda")


# ---- on a CUDA device (-m gpu) --------------------------------------------------------------
needs_cuda = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def gpu(fn):
    for mark in needs_cuda:
        fn = mark(fn)
    return fn


@pytest.fixture
def no_tf32():
    # TF32 would make fp32 matmuls differ from the CPU reference by ~1e-3
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = old


@gpu
@pytest.mark.parametrize("family", ["mixtral", "qwen2_moe", "qwen3_moe"])
@pytest.mark.parametrize(
    "name,lat",
    [
        ("fiddler", ALWAYS_CPU),
        ("fiddler", ALWAYS_COPY),
        ("fiddler", SPLIT),
        ("fiddler", None),
        ("lru_experts", None),
        ("cpu_experts", None),
    ],
    ids=["cpu", "copy", "split", "measured", "lru", "allcpu"],
)
def test_cuda_offload_matches_plain(family, name, lat, no_tf32):
    plain = build(family)
    with torch.no_grad():
        expected = plain(input_ids=IDS, use_cache=False).logits
    model = build(family)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    budget = budget_gb(model, 3)
    config = OffloadConfig(gpu_memory_gb=budget, device="cuda", latency_tokens=(1, 8))
    extra = {"latency": lat} if lat is not None else {}
    ex = apply_moe_offload(model, name, config, calibration_ids=CALIB, **extra)
    # device memory: the budget, plus the allocator's rounding of each tensor to 512 bytes
    n_tensors = sum(1 for _ in model.parameters()) + 3 * 8 + 4
    assert torch.cuda.memory_allocated() - before <= budget * GB + 512 * n_tensors
    for layer in ex.layers.values():  # experts stay in CPU memory, pinned where copied
        w = layer.module.gate_up_proj
        assert w.device.type == "cpu" and (w.is_pinned() or name == "cpu_experts")
    with torch.no_grad():
        got = model(input_ids=IDS.cuda(), use_cache=False).logits.cpu()
        # a single token (a decode step): SPLIT runs it on the CPU; in the 14-token
        # block every chosen expert may get two or more tokens (seen for qwen2_moe)
        one = model(input_ids=IDS[:1, :1].cuda(), use_cache=False).logits.cpu()
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(one, expected[:1, :1], atol=1e-4, rtol=1e-4)
    if lat is SPLIT:
        assert ex.stats.cpu > 0 and ex.stats.copy > 0


@gpu
def test_cuda_latency_is_measured_and_followed():
    model = tiny_model("mixtral")
    ex = apply_moe_offload(
        model,
        "fiddler",
        OffloadConfig(gpu_memory_gb=budget_gb(model, 0), device="cuda"),
        calibration_ids=CALIB,
    )
    lm = ex.latency
    assert lm.copy_s > 0 and all(t > 0 for t in lm.device_s)
    for n in (1, 16, 128):  # decisions follow the machine's own numbers
        assert lm.choose(n) == ("cpu" if lm.cpu_cost(n) <= lm.copy_cost(n) else "copy")


@gpu
def test_cuda_from_pretrained_moe_offload_and_bf16(tmp_path, no_tf32):
    path = save_tiny_model(tmp_path / "m", "mixtral")
    ref = LLM.from_pretrained(path, device="cuda", measure_energy=False)
    gb = budget_gb(ref.model, 2)
    llm = LLM.from_pretrained(
        path, device="cuda", moe_offload="fiddler", gpu_memory_gb=gb, measure_energy=False
    )
    texts = ["one two three four", "the water is good"]
    assert llm.score(texts) == pytest.approx(ref.score(texts), abs=1e-3)
    bf = LLM.from_pretrained(
        path,
        device="cuda",
        dtype="bfloat16",
        moe_offload="fiddler",
        gpu_memory_gb=gb,
        measure_energy=False,
    )
    ref_bf = LLM.from_pretrained(path, device="cuda", dtype="bfloat16", measure_energy=False)
    assert bf.score(texts) == pytest.approx(ref_bf.score(texts), abs=0.1)


@gpu
def test_accelerate_baseline_matches_plain(no_tf32):
    plain = tiny_model("mixtral")
    with torch.no_grad():
        expected = plain(input_ids=IDS, use_cache=False).logits
    model = tiny_model("mixtral")
    # accelerate keeps the largest decoder layer's size free on the device for the
    # offloaded layers; half a layer more leaves room for the embedding only
    layer = sum(p.nbytes for p in model.model.layers[0].parameters())
    embed = model.model.embed_tokens.weight.nbytes
    device_map = apply_accelerate_offload(model, (1.5 * layer + embed) / GB, "cuda")
    assert {0, "cpu"} <= set(device_map.values())  # some layers really are offloaded
    with torch.no_grad():
        got = model(input_ids=IDS.cuda(), use_cache=False).logits.cpu()
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
