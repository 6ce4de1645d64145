"""Fiddler vs expert-offload baselines on Mixtral-8x7B shapes (random weights), interleaved.

    python tools/bench/moe_offload.py                 # layers: 1 without a GPU, 4 with one
    python tools/bench/moe_offload.py --layers 2 --dtype bfloat16 --gpu-budget-gb 24

Prints, side by side in one process:

1. the DRAM-bandwidth bound of one expert (expert bytes / bandwidth of a plain copy,
   counted STREAM-style: a copy moves its bytes twice) beside the measured CPU expert time
   of the executor's CPU path (plain ``F.linear`` and oneDNN-packed);
2. the placement a 24 GB budget gives the full 32-layer Mixtral-8x7B, scaled to the
   reduced model (same share of experts resident);
3. tokens/s for prefill (batch 1), decode at batch 1 and decode with 4 beams (4 rows per
   step; beam tokens/s = hypothesis tokens per second, cache reordering left out; a new
   random token each step, the same for every method) for Fiddler (with a GPU also
   ``fiddler_worker``: its CPU experts in a worker thread, ``overlap=True``) and the
   baselines: (a) accelerate ``device_map`` offload with the same budget,
   (b) LRU expert cache with on-demand copies, (c) all-CPU (our CPU kernel, and stock
   transformers), plus expert ms per layer per step (step time minus a run whose experts
   return zeros, divided by the layer count). The methods run interleaved over
   ``--rounds`` rounds (order rotated each round; each executor built once, its set-up
   untimed); medians are printed. Accelerate's dispatch cannot be undone in place, so its
   rounds run one after another at the end;
4. the ratios Fiddler / baseline: median [min-max] over the rounds of each round's ratio.

Without a GPU the "device" is the CPU itself: Fiddler and the LRU cache run their same
code path (copies are memcpys), accelerate offload is skipped. Goals (issue 6): on a GPU,
decode >= 10x accelerate and >= 3x LRU; on the CPU, the CPU expert path within 2x of the
DRAM bound.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import time

import torch
from tqdm.auto import tqdm

from speechlm.runtime.moe.baselines import apply_accelerate_offload
from speechlm.runtime.moe.experts import ExpertExecutor, apply_moe_executor, remove_moe_executor
from speechlm.runtime.moe.offload import (
    CPUExperts,
    OffloadConfig,
    apply_moe_offload,
    packed_available,
)
from speechlm.runtime.moe.placement import GB, ModelSizes, measure_popularity, move_non_experts

MIXTRAL_8X7B = dict(
    vocab_size=32000,
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    num_local_experts=8,
    num_experts_per_tok=2,
    max_position_embeddings=4096,
    rope_theta=1e6,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
    bos_token_id=1,
    eos_token_id=2,
)
STAGING = 2


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_of(fn, repeats: int, device: torch.device | None = None) -> float:
    device = device or torch.device("cpu")
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


class ZeroExperts(ExpertExecutor):
    """Experts that cost nothing: the non-expert share of a step."""

    name = "zero"

    def __call__(self, experts, hidden_states, top_k_index, top_k_weights, *, layer_idx):
        return torch.zeros_like(hidden_states)


# ---- 1. DRAM bound vs the CPU expert path -------------------------------------------------
def dram_section(model, repeats: int) -> tuple[float, dict[str, float]]:
    m = model.model.layers[0].mlp.experts
    gu, dn = m.gate_up_proj.data, m.down_proj.data
    expert_bytes = gu[0].nbytes + dn[0].nbytes
    src = torch.empty(expert_bytes, dtype=torch.uint8).fill_(1)
    dst = torch.empty_like(src).fill_(0)
    copy_s = best_of(lambda s=src, d=dst: d.copy_(s), repeats)
    bw = 2 * expert_bytes / copy_s  # read + write
    bound = expert_bytes / bw
    del src, dst
    print(f"\n== 1. one expert ({expert_bytes / 1e6:.1f} MB, {gu.dtype}) on the CPU")
    print(f"plain copy {copy_s * 1e3:.2f} ms -> DRAM bandwidth {bw / 1e9:.1f} GB/s (read+write)")
    print(f"DRAM-bandwidth bound of one expert: {bound * 1e3:.2f} ms")
    layouts = ["plain"] + (["packed"] if packed_available() else [])
    times = {}
    print(f"{'layout':>8} {'tokens':>6} {'ms':>8} {'x bound':>8}")
    for layout in layouts:
        kernel = CPUExperts(m, layout, packed=[0])
        for n in (1, 2, 4, 16):
            x = torch.randn(n, gu.shape[2], dtype=gu.dtype)
            with torch.inference_mode():
                t = best_of(lambda x=x, k=kernel: k(0, x), repeats)
            times[f"{layout}@{n}"] = t
            print(f"{layout:>8} {n:>6} {t * 1e3:>8.2f} {t / bound:>8.2f}")
        del kernel
    return bound, times


# ---- 2. placement --------------------------------------------------------------------------
def budget_section(config, model, budget_gb: float, layers: int) -> tuple[float, int]:
    dtype = model.dtype
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        full = AutoModelForCausalLM.from_config(config.__class__(**MIXTRAL_8X7B), dtype=dtype)
        full_sizes = ModelSizes.of(full)
    full_experts = sum(full_sizes.num_experts.values())
    budget = budget_gb * GB
    n_full = int(
        (budget - full_sizes.non_expert_bytes - STAGING * full_sizes.expert_bytes)
        // full_sizes.expert_bytes
    )
    n_full = max(0, min(n_full, full_experts))
    share = n_full / full_experts
    sizes = ModelSizes.of(model)
    n_experts = sum(sizes.num_experts.values())
    n_res = round(share * n_experts)
    reduced = (sizes.non_expert_bytes + (n_res + STAGING) * sizes.expert_bytes) / GB
    print(f"\n== 2. placement under a {budget_gb:g} GB GPU budget")
    print(
        f"Mixtral-8x7B ({full_sizes.expert_bytes / 1e6:.0f} MB experts in this dtype): "
        f"non-expert {full_sizes.non_expert_bytes / GB:.2f} GB; {n_full}/{full_experts} "
        f"experts fit beside {STAGING} staging slots ({share:.1%})"
    )
    print(
        f"reduced model ({layers} layer(s)): non-expert {sizes.non_expert_bytes / GB:.2f} GB, "
        f"{n_res}/{n_experts} experts resident -> budget {reduced:.2f} GB"
    )
    return reduced, n_res


# ---- 3. tokens/s ----------------------------------------------------------------------------
def run_phases(model, device, args) -> dict[str, float]:
    import inspect

    from transformers import DynamicCache

    # transformers >= 5.2x names the cache argument ``cache``; older ones ``past_key_values``
    params = inspect.signature(model.forward).parameters
    kw = "cache" if "cache" in params else "past_key_values"

    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    prompt = torch.randint(3, vocab, (1, args.prefill), generator=g).to(device)
    out = {}
    with torch.inference_mode():
        t = best_of(lambda: model(input_ids=prompt, use_cache=False), 1, device)
        out["prefill"] = args.prefill / t
        for key, rows in (("decode_b1", 1), ("decode_beam4", 4)):
            ids = torch.randint(3, vocab, (rows, 16), generator=g).to(device)
            cache = DynamicCache()
            model(input_ids=ids, use_cache=True, **{kw: cache})
            # a new token each step, as in decoding (one token fed again and again would
            # route to the same experts every step: an LRU cache's best case); the same
            # tokens for every method
            steps = torch.randint(3, vocab, (args.steps + 1, rows, 1), generator=g).to(device)
            model(input_ids=steps[0], use_cache=True, **{kw: cache})  # warm-up
            sync(device)
            start = time.perf_counter()
            for step in steps[1:]:
                model(input_ids=step, use_cache=True, **{kw: cache})
            sync(device)
            out[key] = args.steps / (time.perf_counter() - start)  # hypothesis tokens/s
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=None)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--gpu-budget-gb", type=float, default=24.0)
    ap.add_argument("--prefill", type=int, default=128)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of section 3")
    ap.add_argument("--cpu-layout", default="auto", choices=["auto", "plain", "packed"])
    ap.add_argument("--shrink", type=int, default=1, help="divide hidden/intermediate (smoke runs)")
    args = ap.parse_args()

    from transformers import AutoConfig, AutoModelForCausalLM

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    layers = args.layers or (4 if cuda else 1)
    dtype = getattr(torch, args.dtype)
    load = os.getloadavg()
    print(
        f"# moe_offload bench: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
        f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"GPU: {torch.cuda.get_device_name() if cuda else 'none'}"
    )
    print(
        f"# Mixtral-8x7B shapes, {layers} layer(s), {args.dtype}, random weights, torch "
        f"{torch.__version__}"
    )

    shape = dict(
        num_hidden_layers=layers,
        hidden_size=MIXTRAL_8X7B["hidden_size"] // args.shrink,
        intermediate_size=MIXTRAL_8X7B["intermediate_size"] // args.shrink,
    )
    config = AutoConfig.for_model("mixtral", **{**MIXTRAL_8X7B, **shape})
    torch.manual_seed(0)
    start = time.perf_counter()
    # random init on the GPU where there is one: the CPU's normal_ runs on one thread
    # (over three minutes for 4 layers), the GPU's in a second; the model then lives in
    # CPU memory, where a user's from_pretrained(device_map=...) would load it
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    model.to("cpu").eval()
    print(f"# built in {time.perf_counter() - start:.1f} s (random init on {device})")

    bound, cpu_times = dram_section(model, args.repeats)
    budget_gb, n_res = budget_section(config, model, args.gpu_budget_gb, layers)

    sizes = ModelSizes.of(model)
    layout = args.cpu_layout
    if layout == "auto":  # packed copies of the offloaded experts need RAM of their own,
        # for each of the (up to 4) offload executors held at once
        extra = 4 * (sum(sizes.num_experts.values()) - n_res) * sizes.expert_bytes
        layout = "packed" if packed_available() and mem_available() > extra + 2 * GB else "plain"
    calib = torch.randint(3, config.vocab_size, (256,), generator=torch.Generator().manual_seed(1))
    popularity = measure_popularity(model, calib.tolist())
    print(f"# CPU expert layout: {layout}; popularity from 256 random tokens: {popularity}")

    def offloaded(name: str, dev: str, latency=None, placement=None, overlap=False):
        conf = OffloadConfig(
            gpu_memory_gb=budget_gb,
            device=dev,
            overlap=overlap,
            cpu_layout=layout,
            latency_repeats=3,
            staging_slots=STAGING,
        )
        extra = {"latency": latency} if latency is not None else {}
        return apply_moe_offload(
            model, name, conf, calibration_ids=calib.tolist(), placement=placement, **extra
        )

    def cleanup():
        remove_moe_executor(model)
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()

    print("\n== 3. tokens/s")
    fiddler = offloaded("fiddler", str(device))
    placement, latency = fiddler.placement, fiddler.latency
    print(f"fiddler latency model: {latency.describe()}")
    print(
        "  cpu cost  ms @1/4/16/128: "
        + " ".join(f"{latency.cpu_cost(n) * 1e3:.1f}" for n in (1, 4, 16, 128))
    )
    print(
        "  copy cost ms @1/4/16/128: "
        + " ".join(f"{latency.copy_cost(n) * 1e3:.1f}" for n in (1, 4, 16, 128))
    )
    # Every executor is built once (its resident copies stay on the device) and swapped in
    # for its turn: attaching an executor to the modules it already holds keeps its state.
    executors = {"fiddler": fiddler}
    if cuda:  # the CPU experts in a worker thread (overlap=True; the default is inline)
        executors["fiddler_worker"] = offloaded("fiddler", str(device), latency, placement, True)
    executors["lru_experts"] = offloaded("lru_experts", str(device), placement=placement)
    executors["cpu_experts"] = offloaded("cpu_experts", "cpu", placement=placement)
    del fiddler
    zero_experts = ZeroExperts()

    def install(name: str) -> torch.device:
        if name in executors:
            ex = executors[name]
            move_non_experts(model, ex.device)
            apply_moe_executor(model, ex)
            return ex.device
        if name == "zero":  # the non-expert share, on the device Fiddler uses
            move_non_experts(model, device)
            apply_moe_executor(model, zero_experts)
            return device
        remove_moe_executor(model)  # transformers_cpu: stock experts, all on the CPU
        move_non_experts(model, "cpu")
        return torch.device("cpu")

    names = [*executors, "transformers_cpu", "zero"]
    rounds: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    counts = {n: dict.fromkeys(("device", "copy", "cpu"), 0) for n in executors}
    for r in tqdm(range(args.rounds), desc="interleaved rounds", unit="round"):
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotate the order
            dev = install(name)
            ex = executors.get(name)
            before = dict(ex.stats.as_dict()) if ex else {}
            rounds[name].append(run_phases(model, dev, args))
            if ex:
                after = ex.stats.as_dict()
                for k in counts[name]:
                    counts[name][k] += after[k] - before[k]
    notes = {n: " ".join(f"{k}={v}" for k, v in c.items()) for n, c in counts.items()}
    lru = executors["lru_experts"]
    notes["lru_experts"] += f" hits={lru.hits} misses={lru.misses}"
    del lru
    notes["transformers_cpu"] = "stock transformers experts, all on the CPU"
    executors.clear()
    cleanup()
    move_non_experts(model, "cpu")
    if cuda:
        # accelerate's dispatch moves weights to "meta" behind its hooks: it cannot be swapped
        # out and back, so its rounds run one after another, after the others
        apply_accelerate_offload(model, budget_gb, device)
        rounds["accelerate"] = [run_phases(model, device, args) for _ in range(args.rounds)]
        notes["accelerate"] = f"device_map offload, {budget_gb:.2f} GB (rounds in a row)"
    else:
        notes["accelerate"] = "skipped: needs a GPU"
    zero = rounds.pop("zero")

    def median(runs: list[dict[str, float]], phase: str) -> float:
        return statistics.median(x[phase] for x in runs)

    phases = ("prefill", "decode_b1", "decode_beam4")
    print(
        f"median of {args.rounds} rounds (tok/s)\n{'method':>17} "
        + " ".join(f"{p + ' tok/s':>18}" for p in phases)
        + f" {'experts ms/layer/step (b1)':>27}  where experts ran (all rounds)"
    )
    zero_b1 = median(zero, "decode_b1")
    for name, runs in rounds.items():
        per_layer = (1 / median(runs, "decode_b1") - 1 / zero_b1) / layers * 1e3
        print(
            f"{name:>17} "
            + " ".join(f"{median(runs, p):>18.2f}" for p in phases)
            + f" {per_layer:>27.2f}  {notes[name]}"
        )
    print(f"{'(zero experts)':>17} " + " ".join(f"{median(zero, p):>18.2f}" for p in phases))
    if "accelerate" not in rounds:
        print(f"{'accelerate':>17} {notes['accelerate']}")

    print(
        "\n== 4. ratios (Fiddler / baseline, higher = Fiddler faster): median [min-max] over "
        "the rounds, each round's Fiddler over the same round's baseline"
    )

    def ratio(base: str, phase: str) -> tuple[float, float, float]:
        rs = [f[phase] / b[phase] for f, b in zip(rounds["fiddler"], rounds[base], strict=True)]
        return statistics.median(rs), min(rs), max(rs)

    for base in [b for b in rounds if b != "fiddler"]:
        print(
            f"fiddler / {base:<17} "
            + "  ".join(
                "{} {:.2f}x [{:.2f}-{:.2f}]".format(p, *ratio(base, p)) for p in phases
            )
        )
    best = min(v for k, v in cpu_times.items() if k.endswith("@1"))
    print(
        f"\nCPU expert path at 1 token: {best * 1e3:.2f} ms = {best / bound:.2f}x the DRAM "
        f"bound {bound * 1e3:.2f} ms (goal <= 2x)"
    )
    if cuda:
        print(
            f"GPU goals: decode b1 vs accelerate {ratio('accelerate', 'decode_b1')[0]:.1f}x "
            f"(goal >= 10x), vs LRU {ratio('lru_experts', 'decode_b1')[0]:.1f}x (goal >= 3x)"
        )
    load = os.getloadavg()
    print(f"# load at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
