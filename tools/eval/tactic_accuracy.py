"""Tactic accuracy: true captured mass, tokens and output error vs P, against Quest and top-p.

Two parts, one table each (stdout and ``--out``/accuracy.tsv), plots beside them:

1. synthetic heads (``speechlm_kernels.tactic.synthetic``; retrieval, streaming,
   clustered, diffuse) at each ``--contexts``: per head type and P, Tactic's mean and
   5th-percentile true mass, tokens read per KV head (group union) and per query head
   (own budget), relative output error; the Quest-style baseline at the same mean
   tokens per KV head; the exact top-p oracle's tokens.
2. real attention captured from a local checkpoint (default: the embedded SLURP LM,
   context 64) through the runtime backends in record mode, while decoding SLURP
   sentences: per layer/head/step budget, mass and error, and a plot of the budget
   distribution across heads and layers (``budget_heads_layers.png``).

    python tools/eval/tactic_accuracy.py
    python tools/eval/tactic_accuracy.py --contexts 4096 --model /path/to/lm --text t.txt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from speechlm_kernels.tactic import (
    build_index,
    build_pages,
    captured_mass,
    dense_probs,
    oracle_select,
    quest_select,
    sparse_decode_attention,
    tactic_select,
)
from speechlm_kernels.tactic.synthetic import HEAD_TYPES, make_batch
from tqdm import tqdm


def _stats(q, k, v, sel, probs, dense):
    out, _ = sparse_decode_attention(q, k, v, sel.idx, sel.counts)
    mass = captured_mass(probs, sel).flatten()
    err = ((out - dense).norm(dim=-1) / dense.norm(dim=-1)).flatten()
    return dict(
        mass_mean=mass.mean().item(),
        mass_p5=mass.quantile(0.05).item(),
        tokens_kv=sel.counts.float().mean().item(),
        tokens_q=sel.budget.float().mean().item(),
        rel_err=err.mean().item(),
    )


def synthetic(args) -> list[dict]:
    rows = []
    d, r, recent = 128, 4, 64
    cases = [(t, kind) for t in args.contexts for kind in HEAD_TYPES]
    for t, kind in tqdm(cases, desc="synthetic", unit="case"):
        q, k, v = make_batch(args.batch, t, mix=(kind,) * args.kv_heads, r=r, d=d, seed=1)
        scale = d**-0.5
        probs = dense_probs(q, k, None, scale)
        b, h = q.shape[:2]
        dense = (probs.view(b, args.kv_heads, r, t) @ v).view(b, h, d)
        index = build_index(k[:, :, : t - recent], cluster_size=16)
        pages = build_pages(k[:, :, : t - recent], page_size=16)
        for p in args.p:
            sel = tactic_select(q, k, index, p=p, scale=scale)
            tac = _stats(q, k, v, sel, probs, dense)
            lo, hi = 1, pages.kmin.shape[2]
            while lo < hi:  # Quest top_k giving the same mean tokens per KV head
                mid = (lo + hi) // 2
                n = quest_select(q, k, pages, top_k=mid, scale=scale).counts.float().mean()
                lo, hi = (mid + 1, hi) if n < tac["tokens_kv"] else (lo, mid)
            qst = _stats(q, k, v, quest_select(q, k, pages, top_k=lo, scale=scale), probs, dense)
            orc = _stats(q, k, v, oracle_select(q, k, p=p, scale=scale), probs, dense)
            rows.append(dict(context=t, head=kind, p=p, quest_top_k=lo,
                             **{f"tactic_{a}": x for a, x in tac.items()},
                             **{f"quest_{a}": x for a, x in qst.items()},
                             **{f"oracle_{a}": x for a, x in orc.items()}))  # fmt: skip
    return rows


def _windows(text_path: Path, tokenizer, length: int, count: int) -> list[list[int]]:
    lines = [x.strip() for x in text_path.read_text().splitlines() if x.strip()]
    ids: list[int] = []
    # each line as the embedded LM was trained on it (<s> line </s>), lines back to back
    sep = [t for t in (tokenizer.eos_token_id, tokenizer.bos_token_id) if t is not None]
    for line in lines:
        ids += tokenizer(line, add_special_tokens=False)["input_ids"] + sep  # one line each
        if len(ids) >= length * count:
            break
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    n = length - len(bos)
    return [bos + ids[i * n : (i + 1) * n] for i in range(min(count, len(ids) // n))]


def real_model(args) -> tuple[list[dict], dict]:
    """Teacher-forced decoding of text windows with each backend in record mode."""
    from speechlm.runtime import LLM
    from speechlm.runtime.engine import CallStats

    probe = LLM.from_pretrained(args.model, measure_energy=False)
    length = min(args.window, probe.max_length)
    windows = _windows(args.text, probe.tokenizer, length, args.windows)
    small = dict(min_tokens=args.prefill, refresh=args.refresh)
    configs = {f"tactic_p{p}": ("tactic", dict(p=p, cluster_size=args.cluster_size, **small))
               for p in args.p}  # fmt: skip
    configs.update({f"oracle_p{p}": ("tactic", dict(p=p, mode="oracle", **small)) for p in args.p})
    for top_k in args.quest_top_k:
        configs[f"quest_k{top_k}"] = ("quest", dict(page_size=args.page_size, top_k=top_k, **small))
    rows, records = [], {}
    for name, (backend, conf) in tqdm(configs.items(), desc="real model", unit="backend"):
        llm = LLM.from_pretrained(
            args.model, attention=backend, attention_conf=dict(conf, record=True),
            measure_energy=False,
        )  # fmt: skip
        eng = llm.engine
        for ids in windows:
            cache = eng.new_cache()
            x = torch.tensor([ids])
            eng.forward(x[:, : args.prefill], None, torch.arange(args.prefill)[None], cache,
                        phase="prefill", stats=CallStats())  # fmt: skip
            for i in range(args.prefill, len(ids)):
                eng.forward(x[:, i : i + 1], None, torch.tensor([[i]]), cache,
                            phase="decode", stats=CallStats())  # fmt: skip
        recs = eng.attention.records
        records[name] = recs
        mass = torch.cat([r["mass"].flatten() for r in recs])
        err = torch.cat([r["rel_error"].flatten() for r in recs])
        frac = torch.cat([(r["union"] / r["context"]).flatten().float() for r in recs])
        own = torch.cat([(r["budget"] / r["context"]).flatten().float() for r in recs])
        rows.append(dict(backend=name, steps=len(recs), mass_mean=mass.mean().item(),
                         mass_p5=mass.quantile(0.05).item(), token_frac=frac.mean().item(),
                         own_frac=own.mean().item(), rel_err=err.mean().item()))  # fmt: skip
    return rows, records


def plot_budgets(records: list[dict], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = 1 + max(r["layer"] for r in records)
    heads = records[0]["budget"].shape[1]
    frac = torch.zeros(layers, heads)
    n = torch.zeros(layers, 1)
    for r in records:
        frac[r["layer"]] += (r["budget"] / r["context"]).float().mean(0)
        n[r["layer"]] += 1
    frac /= n.clamp(min=1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    im = axes[0].imshow(frac.numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1)
    axes[0].set(xlabel="query head", ylabel="layer", title="mean budget / context",
                xticks=range(heads), yticks=range(layers))  # fmt: skip
    fig.colorbar(im, ax=axes[0])
    for layer in range(layers):
        vals = torch.cat([(r["budget"] / r["context"]).flatten().float()
                          for r in records if r["layer"] == layer])  # fmt: skip
        axes[1].hist(vals.numpy(), bins=20, range=(0, 1), histtype="step", label=f"layer {layer}")
    axes[1].set(xlabel="budget / context (per head and step)", ylabel="count", title=title)
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(out)


def _write(rows: list[dict], path: Path) -> str:
    cols = list(rows[0])
    lines = ["\t".join(cols)]
    for r in rows:
        lines.append("\t".join(f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c])
                               for c in cols))  # fmt: skip
    text = "\n".join(lines)
    path.write_text(text + "\n")
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--contexts", type=int, nargs="+", default=[4096, 16384])
    ap.add_argument("--p", type=float, nargs="+", default=[0.9, 0.75])
    ap.add_argument("--batch", type=int, default=2, help="synthetic rows per case")
    ap.add_argument("--kv-heads", type=int, default=2, help="synthetic KV heads per case")
    ap.add_argument("--model", type=Path, default=Path("/tmp/lmproto/final/lm"))
    ap.add_argument("--text", type=Path, default=Path("/tmp/lmproto/small.txt"))
    ap.add_argument("--window", type=int, default=64, help="tokens per text window")
    ap.add_argument("--windows", type=int, default=20)
    ap.add_argument("--prefill", type=int, default=16, help="dense prefill tokens per window")
    ap.add_argument("--cluster-size", type=int, default=4, help="real model (short context)")
    ap.add_argument("--page-size", type=int, default=4, help="Quest pages, real model")
    ap.add_argument("--quest-top-k", type=int, nargs="+", default=[2, 4, 6])
    ap.add_argument("--refresh", type=int, default=16)
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("exp/eval_tactic"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    with torch.inference_mode():
        if not args.skip_synthetic:
            print(_write(synthetic(args), args.out / "accuracy_synthetic.tsv"))
        rows, records = real_model(args)
    print(_write(rows, args.out / "accuracy_real.tsv"))
    for name, recs in records.items():
        if name.startswith("tactic"):
            plot_budgets(recs, args.out / f"budget_heads_layers_{name}.png",
                         f"{name}, {args.model.name}")  # fmt: skip
    print(f"wrote {args.out}/accuracy_*.tsv and budget_heads_layers_*.png")


if __name__ == "__main__":
    main()
