"""Model-level effect of sparse decode attention: perplexity and KL to dense decoding.

Teacher-forced decoding of a text with any local checkpoint: the first ``--prefill``
tokens of each window run as one dense prefill, then every further token is fed as a
decode step (so the sparse backend is what predicts it). For each backend (dense SDPA,
Tactic at each P, the Quest-style baseline at each top_k) the script reports perplexity
over the decoded positions and the mean KL(dense || backend) of the next-token
distributions, plus the backend's mean tokens read when it records them.

    # a long-context checkpoint and a long text
    python tools/eval/tactic_ppl.py --model /path/to/llama --text book.txt --window 32768 \\
        --prefill 16384 --windows 1 --cluster-size 16 --page-size 16 --quest-top-k 64 128
    # here: the embedded SLURP LM (context 64), short settings
    python tools/eval/tactic_ppl.py
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from tqdm import tqdm


def windows_of(text_path: Path, tokenizer, length: int, count: int) -> list[list[int]]:
    """``count`` windows of ``length`` token ids (BOS first where the tokenizer has one)."""
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


def decode_logprobs(llm, ids: list[int], prefill: int) -> torch.Tensor:
    """Log-probs ``(len(ids) - prefill, V)`` predicting ``ids[prefill:]``, one step each."""
    from speechlm.runtime.engine import CallStats

    eng = llm.engine
    cache = eng.new_cache()
    x = torch.tensor([ids], device=eng.device)
    out = eng.forward(x[:, :prefill], None, torch.arange(prefill, device=eng.device)[None],
                      cache, phase="prefill", stats=CallStats(), logits_to_keep=1)  # fmt: skip
    rows = [out.logits[0, -1].float().log_softmax(-1)]
    for i in range(prefill, len(ids) - 1):
        out = eng.forward(x[:, i : i + 1], None, torch.tensor([[i]], device=eng.device), cache,
                          phase="decode", stats=CallStats())  # fmt: skip
        rows.append(out.logits[0, -1].float().log_softmax(-1))
    return torch.stack(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=Path("/tmp/lmproto/final/lm"))
    ap.add_argument("--text", type=Path, default=Path("/tmp/lmproto/small.txt"))
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--windows", type=int, default=20)
    ap.add_argument("--prefill", type=int, default=16)
    ap.add_argument("--p", type=float, nargs="+", default=[0.9, 0.75])
    ap.add_argument("--cluster-size", type=int, default=4)
    ap.add_argument("--page-size", type=int, default=4)
    ap.add_argument("--quest-top-k", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--refresh", type=int, default=16)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", type=Path, default=Path("exp/eval_tactic"))
    args = ap.parse_args()
    from speechlm.runtime import LLM

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    common = dict(min_tokens=args.prefill, refresh=args.refresh, record=True)
    configs = {"dense": ("sdpa", {})}
    for p in args.p:
        configs[f"tactic_p{p}"] = ("tactic", dict(p=p, cluster_size=args.cluster_size, **common))
    for k in args.quest_top_k:
        configs[f"quest_k{k}"] = ("quest", dict(page_size=args.page_size, top_k=k, **common))
    dense_lp, rows = None, []
    for name, (backend, conf) in configs.items():
        llm = LLM.from_pretrained(args.model, dtype=args.dtype, device=args.device,
                                  attention=backend, attention_conf=conf,
                                  measure_energy=False)  # fmt: skip
        length = min(args.window, llm.max_length)
        wins = windows_of(args.text, llm.tokenizer, length, args.windows)
        lps = []
        with torch.inference_mode():
            for ids in tqdm(wins, desc=name, unit="window", leave=False):
                lps.append((decode_logprobs(llm, ids, args.prefill), ids[args.prefill :]))
        nll = torch.cat([-lp.gather(1, torch.tensor(t, device=lp.device)[:, None])[:, 0]
                         for lp, t in lps])  # fmt: skip
        if dense_lp is None:
            dense_lp = [lp for lp, _ in lps]
        pairs = zip(dense_lp, lps, strict=True)
        kl = torch.cat([(d.exp() * (d - lp)).sum(-1) for d, (lp, _) in pairs])  # KL(dense||b)
        recs = getattr(llm.engine.attention, "records", [])
        frac = (torch.cat([(r["union"] / r["context"]).flatten().float() for r in recs])
                .mean().item() if recs else 1.0)  # fmt: skip
        rows.append((name, math.exp(nll.mean().item()), kl.mean().item(), frac, nll.numel()))
    lines = ["backend\tppl\tkl_to_dense\ttoken_frac\tpositions"]
    lines += [f"{n}\t{p:.3f}\t{k:.5f}\t{f:.3f}\t{c}" for n, p, k, f, c in rows]
    text = "\n".join(lines)
    print(f"{args.model} on {args.text}: {len(wins)} windows of {length} tokens, "
          f"dense prefill {args.prefill}, then one decode step per token")  # fmt: skip
    print(text)
    (args.out / "ppl.tsv").write_text(text + "\n")


if __name__ == "__main__":
    main()
