"""Decode-attention time per step: dense SDPA vs Tactic vs a Quest-style fixed budget.

One layer of Llama-3-8B shapes (32 query heads, 8 KV heads, head dim 128), one decode
query per row, keys/values from ``speechlm_kernels.tactic.synthetic`` (no long-context
model is available here; the head-type mix is printed). Batch rows are copies of row 0
in separate memory, so one k-means index serves every batch size (k-means at 32K costs
minutes on this CPU); each row is still read and selected on its own. For each batch
size and context:

* dense: ``torch.nn.functional.scaled_dot_product_attention(..., enable_gqa=True)``;
* Tactic at each P: selection (centroid ranking, exact head, fit, walk, union, gather)
  and attention over the selection timed separately; true captured mass against dense
  (mean and 5th percentile over heads);
* Quest-style: ``top_k`` pages of 16 calibrated so its mean tokens read per KV head
  match Tactic's at the first P (equal average budget), timed the same way.

The k-means index (and Quest's page bounds) is built once per context, outside the timed
step (it is amortised over the refresh period; its time is printed). ``recent`` tokens at
the end are dense, as in the runtime (tokens decoded since the last refresh).

Bytes read per step are counted from what each method touches (keys/values rows,
centroids, page bounds, token lists), so ``bytes / time`` can be compared with the
machine's memory bandwidth. Results: a table on stdout and in ``--out``/tactic.tsv,
plots (time vs context; budget per head at the largest context) beside it.

    python tools/bench/tactic.py                     # CPU: 8K, 16K, 32K; batch 1 and 8
    python tools/bench/tactic.py --device cuda --contexts 8192 32768 131072 --dtype bfloat16
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from speechlm_kernels.tactic import (
    build_index,
    build_pages,
    captured_mass,
    dense_probs,
    quest_select,
    sparse_decode_attention,
    tactic_select,
)
from speechlm_kernels.tactic.synthetic import DEFAULT_MIX, make_batch
from tqdm import tqdm

H, G, D = 32, 8, 128


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timeit(fn, device, reps: int, warmup: int = 1) -> tuple[float, object]:
    """Median seconds of ``fn()`` over ``reps`` runs (after ``warmup``), and its result."""
    out = None
    for _ in range(warmup):
        out = fn()
    _sync(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def quest_top_k_for(q, k, pages, target_tokens: float, scale: float) -> int:
    """Smallest ``top_k`` whose mean tokens per KV head reach ``target_tokens``."""
    lo, hi = 1, pages.kmin.shape[2]
    while lo < hi:
        mid = (lo + hi) // 2
        if quest_select(q, k, pages, top_k=mid, scale=scale).counts.float().mean() < target_tokens:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _rows_of(x, b: int):
    """Batch ``b`` copies of row 0 in distinct memory (a real batch reads b caches)."""
    return x.repeat(b, *([1] * (x.dim() - 1)))


def make_case(t, args, device, dtype):
    """Row-0 data of one context and its k-means index (built once, timed)."""
    q, k, v = make_batch(1, t, mix=DEFAULT_MIX, r=H // G, d=D, seed=args.seed, dtype=dtype)
    q, k, v = q.to(device), k.to(device), v.to(device)
    start = time.perf_counter()
    index = build_index(k[:, :, : t - args.recent], cluster_size=args.cluster_size,
                        iters=args.iters)  # fmt: skip
    _sync(device)
    return (q, k, v, index), time.perf_counter() - start


def bench_one(b, t, case, index_s, args, device, pbar):
    q1, k1, v1, index1 = case
    q, k, v = _rows_of(q1, b), _rows_of(k1, b), _rows_of(v1, b)
    index = type(index1)(*(_rows_of(x, b) for x in index1[:-1]), index1.n_tokens)
    e = k.element_size()
    scale = D**-0.5
    n = t - args.recent
    rows = []

    def dense_fn():
        return torch.nn.functional.scaled_dot_product_attention(
            q[:, :, None], k, v, scale=scale, enable_gqa=True
        )

    dense_s, dense_out = timeit(dense_fn, device, args.reps)
    dense_out = dense_out[:, :, 0].float()
    dense_bytes = 2 * b * G * t * D * e
    probs = dense_probs(q, k, None, scale)  # (B, H, T): the truth for captured mass
    pages = build_pages(k[:, :, :n], page_size=16)
    c = index.centroids.shape[2]

    def measure(name, select_fn, extra_bytes_fn):
        sel_s, sel = timeit(select_fn, device, args.reps)
        att_s, (out, _) = timeit(
            lambda: sparse_decode_attention(q, k, v, sel.idx, sel.counts, scale, impl=args.impl),
            device,
            args.reps,
        )
        mass = captured_mass(probs, sel).flatten()
        err = (out.float() - dense_out).norm(dim=-1) / dense_out.norm(dim=-1)
        tokens = sel.counts.float().mean().item()
        att_bytes = int(sel.counts.sum()) * (2 * D * e + 8)  # K and V rows + the index
        total = sel_s + att_s
        return dict(
            batch=b, context=t, method=name, dense_ms=dense_s * 1e3,
            select_ms=sel_s * 1e3, attend_ms=att_s * 1e3, total_ms=total * 1e3,
            speedup=dense_s / total, tokens=tokens, token_frac=tokens / t,
            mass_mean=mass.mean().item(), mass_p5=mass.quantile(0.05).item(),
            rel_err=err.mean().item(), dense_MB=dense_bytes / 1e6,
            MB=(att_bytes + extra_bytes_fn(sel)) / 1e6, index_s=index_s,
            budget=sel.budget.float().cpu(),
        )  # fmt: skip

    def tactic_bytes(sel):
        # centroids + sizes/offsets, exact head + two sampled segments per query head
        # (upper bound: heads of a group read their own rows), recent keys, perm slots
        n_exact = max(16, int(0.015 * n)) + 2 * 32
        return (
            b * G * c * (D * e + 16)
            + b * H * n_exact * (D * e + 8)
            + b * G * args.recent * D * e
            + int(sel.counts.sum()) * 8
        )

    for p in args.p:
        pbar.set_postfix_str(f"B={b} T={t}: tactic P={p}")
        rows.append(measure(
            f"tactic_p{p}",
            lambda p=p: tactic_select(q, k, index, p=p, scale=scale, impl=args.impl),
            tactic_bytes,
        ))  # fmt: skip
    pbar.set_postfix_str(f"B={b} T={t}: quest")
    top_k = quest_top_k_for(q, k, pages, rows[0]["tokens"], scale)
    rows.append(measure(
        f"quest_k{top_k}",
        lambda: quest_select(q, k, pages, top_k=top_k, scale=scale),
        lambda sel: 2 * b * G * pages.kmin.shape[2] * D * 4 + b * G * args.recent * D * e,
    ))  # fmt: skip
    return rows


COLUMNS = [
    ("batch", "{:d}"), ("context", "{:d}"), ("method", "{}"), ("dense_ms", "{:.2f}"),
    ("select_ms", "{:.2f}"), ("attend_ms", "{:.2f}"), ("total_ms", "{:.2f}"),
    ("speedup", "{:.2f}x"), ("token_frac", "{:.3f}"), ("mass_mean", "{:.3f}"),
    ("mass_p5", "{:.3f}"), ("rel_err", "{:.4f}"), ("dense_MB", "{:.1f}"), ("MB", "{:.1f}"),
    ("index_s", "{:.1f}"),
]  # fmt: skip


def format_row(row) -> str:
    return "\t".join(fmt.format(row[name]) for name, fmt in COLUMNS)


def plot(rows, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for b in sorted({r["batch"] for r in rows}):
        sub = [r for r in rows if r["batch"] == b]
        ctx = sorted({r["context"] for r in sub})
        dense = [next(r["dense_ms"] for r in sub if r["context"] == c) for c in ctx]
        axes[0].plot(ctx, dense, "k-o", label=f"dense SDPA B={b}",
                     alpha=1 if b == 1 else 0.5)  # fmt: skip
        for m in dict.fromkeys(r["method"].split("_k")[0] for r in sub):  # quest_k<K> -> quest
            ms = [next(r["total_ms"] for r in sub
                       if r["context"] == c and r["method"].split("_k")[0] == m)
                  for c in ctx]  # fmt: skip
            axes[0].plot(ctx, ms, "--o", label=f"{m} B={b}")
    axes[0].set(xscale="log", yscale="log", xlabel="context (tokens)", ylabel="ms / decode step",
                title="decode attention, one layer (32 q / 8 kv heads, d=128)")  # fmt: skip
    axes[0].legend(fontsize=7)
    big = max(r["context"] for r in rows)
    for r in rows:
        if r["context"] == big and r["batch"] == 1:
            frac = (r["budget"][0] / big).numpy()
            axes[1].plot(range(len(frac)), frac, "o-", label=r["method"], ms=3)
    for g, kind in enumerate(DEFAULT_MIX):
        axes[1].axvspan(g * 4 - 0.5, g * 4 + 3.5, color=f"C{g % 2 + 7}", alpha=0.08)
        axes[1].text(g * 4 + 1.5, 1.02, kind[:6], ha="center", fontsize=7)
    axes[1].set(xlabel="query head (4 per KV head)", ylabel="tokens chosen / context",
                ylim=(0, 1.08), title=f"per-head budget at {big} tokens, batch row 0")  # fmt: skip
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--contexts", type=int, nargs="+", default=[8192, 16384, 32768])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--p", type=float, nargs="+", default=[0.9, 0.75])
    ap.add_argument("--cluster-size", type=int, default=16)
    ap.add_argument("--iters", type=int, default=10, help="k-means iterations")
    ap.add_argument("--recent", type=int, default=64, help="dense recent tokens")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--impl", default="auto", choices=["auto", "triton", "ref"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1: the two cores here are shared)",
    )
    ap.add_argument("--out", type=Path, default=Path("exp/bench_tactic"))
    args = ap.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"device {device}, {args.dtype}, torch threads {args.threads}, "
          f"impl {args.impl}; KV-head mix {DEFAULT_MIX}; cluster size {args.cluster_size}, "
          f"{args.iters} k-means iterations, {args.recent} dense recent tokens")  # fmt: skip
    rows = []
    torch.set_num_threads(args.threads)
    with torch.inference_mode(), tqdm(total=len(args.contexts) * len(args.batches),
                                      desc="bench", unit="case") as pbar:  # fmt: skip
        for t in args.contexts:
            pbar.set_postfix_str(f"T={t}: k-means index")
            case, index_s = make_case(t, args, device, dtype)
            for b in args.batches:
                rows += bench_one(b, t, case, index_s, args, device, pbar)
                pbar.update()
            del case
    header = "\t".join(name for name, _ in COLUMNS)
    lines = [header] + [format_row(r) for r in rows]
    print("\n".join(lines))
    (args.out / "tactic.tsv").write_text("\n".join(lines) + "\n")
    plot(rows, args.out / "tactic.png")
    goal = [r for r in rows if r["context"] == 32768 and r["method"] == "tactic_p0.9"]
    for r in goal:
        ok = r["speedup"] >= 3 and r["mass_mean"] >= 0.88
        print(f"goal @32K B={r['batch']}: {r['speedup']:.2f}x dense, mean mass "
              f"{r['mass_mean']:.3f} -> {'met' if ok else 'NOT met'} (>= 3x, >= 0.88)")  # fmt: skip
    for r in rows:
        if r["method"].startswith("tactic"):
            gbps = r["MB"] / r["total_ms"]
            print(f"B={r['batch']} T={r['context']} {r['method']}: {r['MB']:.1f} MB read in "
                  f"{r['total_ms']:.2f} ms = {gbps:.1f} GB/s (dense {r['dense_MB']:.1f} MB, "
                  f"{r['dense_MB'] / r['dense_ms']:.1f} GB/s)")  # fmt: skip
    print(f"wrote {args.out / 'tactic.tsv'} and {args.out / 'tactic.png'}")


if __name__ == "__main__":
    main()
