"""Greedy generation throughput: the runtime vs transformers ``generate``, batch 1 and 8.

Same weights, same prompts (equal lengths, so no padding), EOS disabled on both sides so
each produces exactly ``--new-tokens`` tokens; both run here, in one process, alternating.

    .venv/bin/python tools/bench/llm_generate.py [--new-tokens 64] [--threads 2]
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


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prompt-words", type=int, default=24)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from speechlm.runtime import LLM, SamplingParams

    base, tok, config = bench_model(seed=0)
    mine, _, _ = bench_model(seed=0)
    base, mine = base.to(args.device), mine.to(args.device)
    base.generation_config.eos_token_id = None  # always generate exactly new_tokens
    base.generation_config.pad_token_id = 0
    for kv_cache in ("contiguous", "dynamic"):
        llm = LLM(mine, tok, kv_cache=kv_cache, measure_energy=False)
        llm.eos_ids = []  # same: no early stop
        params = SamplingParams(max_tokens=args.new_tokens)
        if kv_cache == "contiguous":
            print(describe(config))
            print(
                f"greedy, prompt {args.prompt_words} words (+BOS), {args.new_tokens} new tokens, "
                f"best of {args.repeats}; device {args.device}"
            )
        rng = random.Random(0)
        for b in args.batches:
            prompts = [random_words(rng, args.prompt_words) for _ in range(b)]
            ids = torch.tensor([tok(p)["input_ids"] for p in prompts], device=args.device)
            hf_s, rt_s = [], []
            for _ in range(args.repeats + 1):  # first round is warm-up
                t = time.perf_counter()
                with torch.inference_mode():
                    hf = base.generate(
                        ids,
                        attention_mask=torch.ones_like(ids),
                        do_sample=False,
                        max_new_tokens=args.new_tokens,
                        min_new_tokens=args.new_tokens,
                    )
                hf_s.append(time.perf_counter() - t)
                t = time.perf_counter()
                ours = llm.generate(prompts, params)
                rt_s.append(time.perf_counter() - t)
            n = b * args.new_tokens
            hf_best, rt_best = min(hf_s[1:]), min(rt_s[1:])
            same = all(
                o.token_ids == h[ids.shape[1] :].tolist() for o, h in zip(ours, hf, strict=True)
            )
            print(
                f"batch {b} kv_cache={kv_cache:10s}: transformers {n / hf_best:8.1f} tok/s | "
                f"runtime {n / rt_best:8.1f} tok/s | ratio {hf_best / rt_best:.2f}x | "
                f"same tokens: {same}"
            )


if __name__ == "__main__":
    main()
