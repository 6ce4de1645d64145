"""N-best scoring throughput: the runtime vs one transformers forward per hypothesis.

100 utterances x 10 hypotheses, each utterance's hypotheses sharing one prompt. The
runtime runs the prompt once, forks its KV cache to the batch and scores the 10
hypotheses in one padded forward; the baseline runs prompt + hypothesis through the
model for every hypothesis. Both run here, in one process, on the same weights.

    .venv/bin/python tools/bench/llm_scoring.py [--utts 100] [--nbest 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_model, describe, random_words  # noqa: E402


def naive_scores(model, tok, prompt: str, hyps: list[str]) -> list[float]:
    """One full forward (prompt + hypothesis) per hypothesis, as a loop would do it."""
    ctx = tok(prompt)["input_ids"]
    out = []
    for h in hyps:
        ids = tok(h, add_special_tokens=False)["input_ids"]
        x = torch.tensor([ctx + ids], device=model.device)
        with torch.inference_mode():
            logp = torch.log_softmax(model(input_ids=x).logits[0].float(), dim=-1)
        pos = torch.arange(len(ctx) - 1, len(ctx) + len(ids) - 1, device=logp.device)
        out.append(float(logp[pos, torch.tensor(ids, device=logp.device)].sum()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--utts", type=int, default=100)
    ap.add_argument("--nbest", type=int, default=10)
    ap.add_argument("--prompt-words", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kv-cache", default="contiguous")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from speechlm.runtime import LLM

    base, tok, config = bench_model(seed=0)
    mine, _, _ = bench_model(seed=0)
    base, mine = base.to(args.device), mine.to(args.device)
    llm = LLM(mine, tok, kv_cache=args.kv_cache, measure_energy=False)
    rng = random.Random(0)
    data = []
    for _ in range(args.utts):
        prompt = "system : " + random_words(rng, args.prompt_words) + " . user :"
        hyps = [random_words(rng, rng.randint(8, 16)) for _ in range(args.nbest)]
        data.append((prompt, hyps))
    n = args.utts * args.nbest
    print(describe(config))
    print(
        f"{args.utts} utterances x {args.nbest} hypotheses, prompt {args.prompt_words + 4} words, "
        f"hypotheses 8-16 words; kv_cache={args.kv_cache}; device {args.device}"
    )

    # warm-up both paths (first-call allocations, lazy imports)
    naive_scores(base, tok, *data[0])
    llm.score(data[0][1], prefix=data[0][0])

    # Interleaved per utterance, so both sides see the same machine load.
    naive_s = runtime_s = 0.0
    ref, got = [], []
    for prompt, hyps in data:
        t = time.perf_counter()
        ref.append(naive_scores(base, tok, prompt, hyps))
        naive_s += time.perf_counter() - t
        t = time.perf_counter()
        got.append(llm.score(hyps, prefix=prompt, batch_size=16))
        runtime_s += time.perf_counter() - t

    err = max(abs(a - b) for r, g in zip(ref, got, strict=True) for a, b in zip(r, g, strict=True))
    print(f"naive loop (1 forward / hypothesis): {n / naive_s:8.1f} hyp/s  ({naive_s:.2f} s)")
    print(f"speechlm runtime (shared prefix)   : {n / runtime_s:8.1f} hyp/s  ({runtime_s:.2f} s)")
    print(f"speed-up: {naive_s / runtime_s:.2f}x (goal >= 5x); max |score diff| = {err:.2e}")


if __name__ == "__main__":
    main()
