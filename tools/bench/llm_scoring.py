"""N-best scoring throughput: the runtime vs plain transformers, the strongest way first.

100 utterances x 10 hypotheses, each utterance's hypotheses sharing one prompt. Or, with
``--labels SLURP.jsonl``, rank classification as ``speechlm slu predict`` runs it: every
intent of the file (verbalized: " alarm set") scored after a few-shot prompt of its
sentences (``--shots`` "sentence => intent" lines and a query); ``--llm`` takes a catalogue
LLM or a local dir instead of the random Llama (labels need its real tokenizer). Methods,
all on the same weights in one process:

* ``runtime``: ``LLM.score(hyps, prefix=prompt)``: the prompt runs once, its KV cache is
  forked to the batch, the hypotheses run in one right-padded forward and the output
  layer is applied only at the positions that score a token;
* ``hf_cache``: what a careful transformers user writes: the prompt once
  (``DynamicCache``), ``batch_repeat_interleave(N)`` of that cache, one right-padded
  forward of all hypotheses with ``logits_to_keep`` = the longest hypothesis (the prompt's
  logits are never computed), ``log_softmax`` and gather;
* ``hf_cache_head``: the same, but the base model's hidden states go through the output
  layer only at the scored positions (no logits for padding): the strongest baseline;
* ``naive``: prompt + hypothesis through the model once per hypothesis (the loop the
  runtime first replaced; ``--no-naive`` skips it).

Timing is interleaved per utterance (the order of the methods rotates), one torch thread
by default, in one process; the load average is printed. Speed-ups are given as the
median over ``--blocks`` blocks of utterances of (baseline time / runtime time) with the
blocks' min-max. Scores are checked against each other (max abs difference printed).

    python tools/bench/llm_scoring.py [--utts 100] [--nbest 10] [--threads 1]
    python tools/bench/llm_scoring.py --labels ../shared/data/slurp/devel.jsonl \
        --llm smollm2-135m-instruct --utts 40 --no-naive
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
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


def hf_cache_scores(model, tok, prompt: str, hyps: list[str], head_at_targets: bool):
    """Prompt once, its cache repeated to the N hypotheses, one padded forward."""
    import inspect

    from transformers import DynamicCache

    dev = model.device
    # transformers >= 5.2x names the argument ``cache`` (``past_key_values`` deprecated)
    ckw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    ctx = tok(prompt)["input_ids"]
    seqs = [tok(h, add_special_tokens=False)["input_ids"] for h in hyps]
    n, p = len(seqs), len(ctx)
    lens = torch.tensor([len(s) for s in seqs])
    t = int(lens.max())
    with torch.inference_mode():
        cache = DynamicCache(config=model.config)
        out = model(input_ids=torch.tensor([ctx], device=dev), use_cache=True,
                    logits_to_keep=1, **{ckw: cache})  # fmt: skip
        first = torch.log_softmax(out.logits[0, -1].float(), -1)  # (V,)
        cache.batch_repeat_interleave(n)
        ids = torch.full((n, t), tok.pad_token_id, dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = torch.tensor(s)
        text = (torch.arange(t)[None] < lens[:, None]).long()
        mask = torch.cat([torch.ones(n, p, dtype=torch.long), text], 1).to(dev)
        pos = (p + torch.arange(t))[None].expand(n, t).to(dev)
        ids = ids.to(dev)
        # position j of row r predicts token j + 1; only j < len - 1 score something
        rows, cols = (torch.arange(t - 1)[None] < (lens - 1)[:, None]).nonzero(as_tuple=True)
        targets = ids[rows, cols + 1]
        kw = dict(input_ids=ids, attention_mask=mask, position_ids=pos, **{ckw: cache})
        if head_at_targets:
            hidden = model.model(**kw, use_cache=True).last_hidden_state  # (N, T, d)
            logits = model.lm_head(hidden[rows, cols]).float()  # (M, V)
        else:
            logits = model(**kw, use_cache=True, logits_to_keep=t).logits[rows, cols].float()
        picked = torch.log_softmax(logits, -1).gather(-1, targets[:, None])[:, 0]
        scores = first[ids[:, 0]] + torch.zeros(n).index_add_(0, rows, picked)
    return scores.tolist()


def label_ranking_data(path: str, utts: int, shots: int, rng: random.Random):
    """(prompt, label texts) per query: ``shots`` random "sentence => intent" lines of a
    SLURP-form jsonl, then another sentence of it; the labels are every intent of the file."""
    from speechlm.llm.slu import PromptConfig

    verbal = PromptConfig().label_text
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    labels = [verbal(x) for x in sorted({r["intent"] for r in rows})]
    data = []
    for _ in range(utts):
        *examples, query = rng.sample(rows, shots + 1)
        lines = [f"{r['sentence']} =>{verbal(r['intent'])}" for r in examples]
        data.append(("\n".join([*lines, f"{query['sentence']} =>"]), labels))
    return data


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--utts", type=int, default=100)
    ap.add_argument("--nbest", type=int, default=10)
    ap.add_argument("--prompt-words", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (2 shared cores)")
    ap.add_argument("--blocks", type=int, default=10, help="utterance blocks for the spread")
    ap.add_argument("--no-naive", action="store_true", help="skip the per-hypothesis loop")
    ap.add_argument("--kv-cache", default="contiguous")
    ap.add_argument("--labels", help="SLURP-form jsonl: rank its intents after few-shot prompts")
    ap.add_argument("--shots", type=int, default=8, help="--labels: examples per prompt")
    ap.add_argument("--llm", help="a catalogue LLM or local dir instead of the random Llama")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from speechlm.runtime import LLM

    if args.llm:
        llm = LLM.from_pretrained(args.llm, kv_cache=args.kv_cache, measure_energy=False,
                                  device=args.device)  # fmt: skip
        model, tok = llm.model, llm.tokenizer
        print(f"{args.llm}: {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters, "
              f"{model.dtype}; torch threads {torch.get_num_threads()}")  # fmt: skip
    else:
        model, tok, config = bench_model(seed=0)
        model = model.to(args.device)
        llm = LLM(model, tok, kv_cache=args.kv_cache, measure_energy=False)
        print(describe(config))
    rng = random.Random(0)
    if args.labels:
        data = label_ranking_data(args.labels, args.utts, args.shots, rng)
        words = [len(tok(p)["input_ids"]) for p, _ in data]
        from speechlm.runtime.generate import shared_rows

        ids = [tok(x, add_special_tokens=False)["input_ids"] for x in data[0][1]]
        spans = [len(x) - 1 for x in ids]  # after the prompt, no EOS
        rows, _ = shared_rows(ids, spans, spans)
        what = (f"{args.utts} queries x {len(ids)} intents of {args.labels} "
                f"({sum(map(len, ids))} tokens; {sum(map(len, rows))} run in {len(rows)} "
                f"shared rows), {args.shots}-shot prompts of {min(words)}-{max(words)} "
                "tokens")  # fmt: skip
    else:
        data = []
        for _ in range(args.utts):
            prompt = "system : " + random_words(rng, args.prompt_words) + " . user :"
            hyps = [random_words(rng, rng.randint(8, 16)) for _ in range(args.nbest)]
            data.append((prompt, hyps))
        what = (f"{args.utts} utterances x {args.nbest} hypotheses, prompt "
                f"{args.prompt_words + 4} words, hypotheses 8-16 words")  # fmt: skip
    n = sum(len(h) for _, h in data)
    print(f"{what}; kv_cache={args.kv_cache}; device {args.device}; "
          f"load average {os.getloadavg()} on {os.cpu_count()} CPUs")  # fmt: skip
    methods = {
        "runtime": lambda pr, hy: llm.score(hy, prefix=pr, batch_size=len(hy)),
        "hf_cache": lambda pr, hy: hf_cache_scores(model, tok, pr, hy, head_at_targets=False),
        "hf_cache_head": lambda pr, hy: hf_cache_scores(model, tok, pr, hy, True),
    }
    if not args.no_naive:
        methods["naive"] = lambda pr, hy: naive_scores(model, tok, pr, hy)
    names = list(methods)
    for fn in methods.values():  # warm-up (first-call allocations, lazy imports)
        fn(*data[0])

    secs = {m: [0.0] * args.utts for m in names}
    scores = {m: [] for m in names}
    for u, (prompt, hyps) in enumerate(data):
        for m in names[u % len(names) :] + names[: u % len(names)]:
            start = time.perf_counter()
            scores[m].append(methods[m](prompt, hyps))
            secs[m][u] = time.perf_counter() - start

    blocks = [range(i, args.utts, args.blocks) for i in range(args.blocks)]
    print(f"load average after {os.getloadavg()}")
    print(f"{'method':14s} {'hyp/s':>8s} {'ms/utt':>8s}  runtime speed-up: median [min-max] "
          f"over {args.blocks} blocks; max |score - runtime|")  # fmt: skip
    for m in names:
        total = sum(secs[m])
        ratios = [sum(secs[m][i] for i in blk) / sum(secs["runtime"][i] for i in blk)
                  for blk in blocks]  # fmt: skip
        err = max(abs(a - b) for r, g in zip(scores[m], scores["runtime"], strict=True)
                  for a, b in zip(r, g, strict=True))  # fmt: skip
        print(f"{m:14s} {n / total:8.1f} {1e3 * total / args.utts:8.1f}  "
              f"{statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]  "
              f"{err:.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
