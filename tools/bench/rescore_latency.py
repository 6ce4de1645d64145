"""Second-pass scoring latency per utterance: pooling heads vs full-sequence probability
scoring (the discriminative-MWER paper's latency point, arXiv 2310.06248), on real 5-best
lists (HyPoradise LibriSpeech test-other), every scorer in one process.

Scorers, as ``speechlm rescore`` runs them (trained dirs are saved and loaded back, so the
deployed path is timed; heads are untrained: their cost does not depend on the weights):

* ``lm``: SmolLM2 log-probability through the runtime (``LLM.score``: one padded forward,
  output layer only at scored positions): the strongest probability scorer, the baseline;
* ``lm_prefill``: the same with BOS prefilled apart and its KV cache forked to the rows, as
  the runtime scored before short contexts were folded into the rows;
* ``mwer_smollm2_prob``: the MWER probability scorer (LoRA merged on load), one padded
  forward with the full (T, vocab) logits;
* ``mwer_smollm2_mean``: a scalar head on SmolLM2's mean-pooled last states (no vocabulary
  projection);
* ``mwer_minilm_mean`` / ``mwer_mpnet_mean``: the bidirectional encoders with the same head;
* ``pll_minilm``: pseudo-log-likelihood, one encoder pass per token (``--no-pll`` skips).

Timing is per utterance (all hypotheses of one N-best), the order of the scorers rotating
from utterance to utterance, one torch thread by default, after one warm-up call each.
Speed-up = baseline time / scorer time, median over ``--blocks`` blocks of utterances
[min-max]. One-time costs (build, save, load) are printed apart. ``lm``,
``lm_prefill`` and ``mwer_smollm2_prob`` compute the same log-probabilities (the largest
difference is printed).

    python tools/bench/rescore_latency.py [--utts 60] [--blocks 6] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
ENCODERS = {"minilm": "minilm-l6", "mpnet": "mpnet-base"}  # catalogue names


def default_nbest() -> Path:
    base = os.environ.get("SPEECHLM_DATA") or str(ROOT.parent / "shared" / "data")
    return Path(base) / "hyporadise_nbest" / "test_ls_other.json"


def prefilled(score, items):
    """``score`` with the BOS context prefilled once and its cache forked to the rows (the
    runtime's scoring path for long prompts) instead of prepended to every row."""
    from speechlm.runtime import generate

    saved, generate.FOLD_CONTEXT_TOKENS = generate.FOLD_CONTEXT_TOKENS, -1
    try:
        return score(items)
    finally:
        generate.FOLD_CONTEXT_TOKENS = saved


def load_scorers(names: list[str], llm_name: str, tmp: Path) -> tuple[dict, dict]:
    """{name: score(items) -> {utt: Scored}} and {name: one-time seconds}."""
    from speechlm.api import load_llm
    from speechlm.llm.second_pass import methods as M
    from speechlm.llm.second_pass.mwer import MwerConfig, build_scorer, save_scorer
    from speechlm.llm.second_pass.pll import PllConfig, build_pll_scorer, save_pll_scorer
    from speechlm.llm.second_pass.run import load_trained_scorer

    fns, once = {}, {}
    for name in names:
        t0 = time.perf_counter()
        if name == "lm":
            llm = load_llm(llm_name)
            cfg = M.MethodConfig(method="lm")
            fns[name] = lambda items, llm=llm, cfg=cfg: M.score(llm, items, cfg)
        elif name == "lm_prefill":
            fns[name] = partial(prefilled, fns["lm"])
        elif name == "pll_minilm":
            scorer, new = build_pll_scorer(PllConfig(model="minilm-l6"))
            save_pll_scorer(scorer, tmp / name, new_keys=new)
            fns[name] = load_trained_scorer("pll", tmp / name)[0].score
        else:
            model, pooling = name.split("_")[1:]
            causal = model == "smollm2"
            cfg = MwerConfig(model=llm_name if causal else ENCODERS[model],
                             kind="causal" if causal else "bidirectional", pooling=pooling)
            save_scorer(build_scorer(cfg), tmp / name)
            fns[name] = load_trained_scorer("mwer", tmp / name)[0].score
        once[name] = time.perf_counter() - t0
    return fns, once


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nbest", type=Path, default=None,
                    help="an N-best file (default: HyPoradise test_ls_other.json)")
    ap.add_argument("--utts", type=int, default=60)
    ap.add_argument("--blocks", type=int, default=6, help="utterance blocks for the spread")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (2 shared cores)")
    ap.add_argument("--llm", default="smollm2-135m-instruct")
    ap.add_argument("--no-pll", action="store_true", help="skip PLL (one pass per token)")
    args = ap.parse_args()
    if args.blocks < 1 or args.utts < args.blocks:
        ap.error("need --utts >= --blocks >= 1")
    torch.set_num_threads(args.threads)

    from speechlm.llm.second_pass.run import load_set

    path = args.nbest or default_nbest()
    if not path.is_file():
        sys.exit(f"{path}: no N-best file (pass --nbest FILE or set SPEECHLM_DATA)")
    items = [it for it in load_set(f"{path}:{args.utts + 1}").items if it.hyps]
    warm, items = items[0], items[1:]
    names = ["lm", "lm_prefill", "mwer_smollm2_prob", "mwer_smollm2_mean", "mwer_minilm_mean",
             "mwer_mpnet_mean"] + ([] if args.no_pll else ["pll_minilm"])
    hyps_per_utt = statistics.mean(len(i.hyps) for i in items)
    words = statistics.mean(len(h.split()) for i in items for h in i.hyps)
    print(f"{len(items)} utterances of {path.name}, {hyps_per_utt:.1f} hypotheses of {words:.1f} "
          f"words on average; torch threads {torch.get_num_threads()}; load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        fns, once = load_scorers(names, args.llm, Path(tmp))
        for name in names:  # warm-up: first-call allocations, lazy imports
            t0 = time.perf_counter()
            fns[name]([warm])
            once[name] += time.perf_counter() - t0
        secs = {m: [0.0] * len(items) for m in names}
        scores = {m: [] for m in names}
        for u, item in enumerate(items):
            for m in names[u % len(names):] + names[: u % len(names)]:
                t0 = time.perf_counter()
                scores[m].append(fns[m]([item])[item.utt].scores)
                secs[m][u] = time.perf_counter() - t0
    print(f"load average after {os.getloadavg()[0]:.2f}")
    diff = max(abs(a - b) for other in ("lm_prefill", "mwer_smollm2_prob")
               for x, y in zip(scores["lm"], scores[other], strict=True)
               for a, b in zip(x, y, strict=True))
    blocks = [range(i, len(items), args.blocks) for i in range(args.blocks)]
    print(f"| scorer | ms / utterance | speed-up vs lm: median [min-max] over {args.blocks} "
          f"blocks | one-time s (load + warm-up) |")
    print("|---|---|---|---|")
    for m in names:
        ratios = [sum(secs["lm"][i] for i in b) / sum(secs[m][i] for i in b) for b in blocks]
        print(f"| {m} | {1000 * statistics.mean(secs[m]):.1f} | {statistics.median(ratios):.2f}x "
              f"[{min(ratios):.2f}-{max(ratios):.2f}] | {once[m]:.1f} |")
    print(f"max |score - lm score| of lm_prefill and mwer_smollm2_prob: {diff:.2e}")


if __name__ == "__main__":
    main()
