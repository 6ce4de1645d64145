"""Back-to-back scoring latency of the trained scorers found under exp/models (the same
20 test-other utterances, one thread, after one warm-up), for the pooled-vs-probability
comparison.

    python local/latency.py exp/quick      (after stage 3)
"""
from __future__ import annotations

import os
import sys
import time

import torch

from speechlm.llm.second_pass.run import load_set, load_trained_scorer

SCORERS = ("mwer_smollm2_prob", "mwer_smollm2_mean", "mwer_smollm2_prob", "mwer_smollm2_mean",
           "mwer_minilm_mean", "mwer_minilm_mean_long", "mwer_mpnet_mean", "lik_smollm2_prob",
           "pll_minilm")


def main(exp: str, data: str = "../../../../shared/data/hyporadise_nbest") -> None:
    torch.set_num_threads(1)
    items = load_set(f"{data}/test_ls_other.json@2:20").items
    for name in SCORERS:
        d = f"{exp}/models/{name}"
        if not os.path.isdir(d):
            continue  # not trained in this run
        scorer = load_trained_scorer("pll" if name.startswith("pll") else "mwer", d)[0]
        scorer.score(items[:1])
        t0 = time.perf_counter()
        scorer.score(items)
        per_utt = (time.perf_counter() - t0) / len(items)
        print(f"{name}\t{per_utt:.3f} s/utt\tload {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
