"""SmolLM2-135M-Instruct (catalogue) vs the trained tiny LM: perplexity, N-best rescoring,
load cost, and the sparse attention backends' captured mass on SmolLM2's real heads.

    .venv/bin/python tools/bench/llm_models.py [--data DIR] [--work DIR] [--utts 200]

* Perplexity per word (and per token of each model's own tokenizer) on held-out SLURP text
  (``slurp/devel.jsonl`` sentences not in ``lm_train_text.txt``) and on the references of
  the HyPoradise utterances used below.
* N-best rescoring on HyPoradise LibriSpeech 5-best lists (``test_ls_clean``,
  ``test_ls_other``; ``--utts`` seeded utterances each whose reference and hypotheses fit
  the tiny LM's 64-token context, first half dev, second half eval).
  The lists carry no scores; their order is the first pass's ranking, so
  ``tot_score = -rank + llm_scale * llm_score``; ``llm_scale`` is chosen on the pooled dev
  halves and reported on the eval halves.
* SmolLM2 load time and resident memory; Tactic / Quest captured attention mass on a
  ~1,300-token HyPoradise text (``record=True``: mass, tokens read, output error).

The tiny LM is ``egs/slurp/slu1/exp/llm`` when the recipe trained it, else
``WORK/tiny_lm``, trained here by ``speechlm lm train`` (3 epochs, ~3 min) if missing.
Everything runs on one torch thread.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
SCALES = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0]
LLM_ONLY = 1e6  # the LLM alone: the rank only breaks ties


def find_data(arg: str | None) -> Path:
    candidates = [REPO.parent / "shared/data", REPO.parents[1] / "shared/data"]
    for d in [Path(arg)] if arg else candidates:
        if (d / "slurp").is_dir() and (d / "hyporadise_nbest").is_dir():
            return d
    sys.exit("shared data (slurp/, hyporadise_nbest/) not found: pass --data DIR")


def tiny_lm_dir(data: Path, work: Path) -> Path:
    recipe = REPO / "egs/slurp/slu1/exp/llm"
    if (recipe / "train_report.json").is_file():
        return recipe
    out = work / "tiny_lm"
    if not (out / "train_report.json").is_file():
        print(f"training the tiny LM into {out} (speechlm lm train, 3 epochs)", flush=True)
        subprocess.run([sys.executable, "-m", "speechlm.bin.lm", "train", "--text",
                        str(data / "slurp/lm_train_text.txt"), "--out", str(out),
                        "--epochs", "3", "--threads", "1", "--no-progress"], check=True)
    return out


def slurp_heldout(data: Path) -> list[str]:
    train = set((data / "slurp/lm_train_text.txt").read_text().splitlines())
    seen, out = set(), []
    for line in (data / "slurp/devel.jsonl").read_text().splitlines():
        s = json.loads(line)["sentence"].strip()
        if s and s not in train and s not in seen:
            seen.add(s)
            out.append(s)
    return out


def hyporadise(data: Path, n: int, seed: int, fits) -> dict[str, list[dict]]:
    """``n`` seeded utterances per set whose reference and hypotheses all ``fits``."""
    out = {}
    for name in ("test_ls_clean", "test_ls_other"):
        items = json.loads((data / f"hyporadise_nbest/{name}.json").read_text())
        random.Random(seed).shuffle(items)
        out[name] = [it for it in items if it["output"].strip() and len(it["input"]) >= 2
                     and all(fits(t) for t in [it["output"], *it["input"]])][:n]
    return out


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set of this process, MB."""
    cur = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            cur = int(line.split()[1]) / 1024
    return cur, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Scorer:
    """ln p(text) under one LLM, with the context that model expects before a sentence."""

    def __init__(self, name: str, llm, prefix: str | None) -> None:
        self.name, self.llm, self.prefix = name, llm, prefix
        self.cache: dict[str, float] = {}

    def score(self, texts: list[str]) -> list[float]:
        todo = sorted({t for t in texts if t not in self.cache})
        for i in range(0, len(todo), 64):
            chunk = todo[i:i + 64]
            # after a prefix the text needs its leading space (BPE word boundary)
            inputs = [" " + t for t in chunk] if self.prefix else chunk
            for t, v in zip(chunk, self.llm.score(inputs, prefix=self.prefix), strict=True):
                self.cache[t] = v
        return [self.cache[t] for t in texts]

    def n_tokens(self, texts: list[str]) -> int:
        tok = self.llm.tokenizer
        return sum(len(tok((" " + t) if self.prefix else t, add_special_tokens=False)
                       ["input_ids"]) for t in texts)


def perplexity(scorer: Scorer, texts: list[str]) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    total = sum(scorer.score(texts))
    sec = time.perf_counter() - t0
    words = sum(len(t.split()) for t in texts)
    return math.exp(-total / words), math.exp(-total / scorer.n_tokens(texts)), sec


def wer(pairs: list[tuple[str, str]]) -> float:
    from speechlm.core.wer import ErrorStats

    stats = ErrorStats()
    for ref, hyp in pairs:
        stats.add(ref.split(), hyp.split())
    return stats.wer  # percent


def pick(items: list[dict], scores: dict[str, float], scale: float) -> list[tuple[str, str]]:
    out = []
    for it in items:
        hyps = it["input"]
        tot = [-r + scale * scores[h] for r, h in enumerate(hyps)]
        out.append((it["output"], hyps[max(range(len(hyps)), key=tot.__getitem__)]))
    return out


def oracle(items: list[dict]) -> list[tuple[str, str]]:
    """Each utterance's hypothesis with the fewest errors (the N-best oracle)."""
    return [(it["output"], min(it["input"], key=lambda h, r=it["output"]: wer([(r, h)])))
            for it in items]


def rescoring(scorer: Scorer, sets: dict[str, list[dict]]) -> list[list[str]]:
    halves = {k: (v[: len(v) // 2], v[len(v) // 2:]) for k, v in sets.items()}
    hyps = [h for v in sets.values() for it in v for h in it["input"]]
    t0 = time.perf_counter()
    scores = dict(zip(hyps, scorer.score(hyps), strict=True))
    sec = time.perf_counter() - t0
    dev = [it for d, _ in halves.values() for it in d]
    best = min(SCALES, key=lambda s: (wer(pick(dev, scores, s)), s))
    rows = []
    for name, (d, e) in halves.items():
        rows.append([scorer.name, name, f"{len(d)}/{len(e)}", f"{best:g}",
                     f"{wer(pick(e, scores, 0.0)):.2f}", f"{wer(pick(e, scores, best)):.2f}",
                     f"{wer(pick(e, scores, LLM_ONLY)):.2f}",
                     f"{wer(oracle(e)):.2f}",
                     f"{wer(pick(d, scores, best)):.2f}"])
    print(f"  {scorer.name}: scored {len(set(hyps))} hypotheses in {sec:.0f} s; dev WER by "
          "llm_scale: " + ", ".join(f"{s:g}={wer(pick(dev, scores, s)):.2f}" for s in SCALES),
          flush=True)
    return rows


def attention_mass(llm, text: str) -> list[list[str]]:
    from speechlm.runtime import LLM, SamplingParams

    rows = []
    for name, conf in [("tactic", dict(p=0.9)), ("tactic", dict(p=0.7)),
                       ("quest", dict(top_k=16)), ("quest", dict(top_k=32))]:
        sparse = LLM(llm.model, llm.tokenizer, attention=name,
                     attention_conf=dict(conf, record=True), measure_energy=False)
        t0 = time.perf_counter()
        out = sparse.generate(text, SamplingParams(max_tokens=16))[0]
        sec = time.perf_counter() - t0
        recs = sparse.engine.attention.records
        mass = torch.stack([r["mass"] for r in recs]).float()
        read = torch.stack([r["union"].float() / r["context"] for r in recs])
        err = torch.stack([r["rel_error"] for r in recs]).float()
        layers = torch.tensor([r["layer"] for r in recs])
        per_layer = torch.stack([mass[layers == i].mean() for i in layers.unique()])
        worst = f"{per_layer.min():.3f} (layer {int(layers.unique()[per_layer.argmin()])})"
        rows.append([name, " ".join(f"{k}={v}" for k, v in conf.items()),
                     str(recs[0]["context"]), str(len(recs) // 30), f"{mass.mean():.3f}",
                     f"{mass.min():.3f}", worst, f"{100 * read.mean():.1f}%",
                     f"{err.mean():.4f}", f"{sec:.1f}", repr(out.text[:30])])
    LLM(llm.model, llm.tokenizer, measure_energy=False)  # back to sdpa
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="shared data dir (slurp/, hyporadise_nbest/)")
    ap.add_argument("--work", default="/tmp/speechlm_bench_llm_models", help="tiny LM goes here")
    ap.add_argument("--utts", type=int, default=200, help="HyPoradise utterances per set")
    ap.add_argument("--slurp-lines", type=int, default=0, help="cap held-out SLURP lines (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-attention", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from speechlm.runtime import LLM

    data = find_data(args.data)
    tiny_dir = tiny_lm_dir(data, Path(args.work))
    slurp = slurp_heldout(data)
    if args.slurp_lines:
        slurp = slurp[: args.slurp_lines]
    tiny = LLM.from_pretrained(tiny_dir, measure_energy=False)

    def fits(text: str) -> bool:  # the tiny LM's context (64 tokens) limits both models
        return len(tiny.tokenizer(text, add_special_tokens=False)["input_ids"]) < tiny.max_length

    slurp = [t for t in slurp if fits(t)]
    sets = hyporadise(data, args.utts, args.seed, fits)
    refs = [it["output"] for v in sets.values() for it in v]
    print(f"data {data}; tiny LM {tiny_dir}; {len(slurp)} held-out SLURP sentences; "
          f"{len(refs)} HyPoradise utterances (all hypotheses within the tiny LM's "
          f"{tiny.max_length} tokens); torch threads {torch.get_num_threads()}", flush=True)

    rss0 = rss_mb()[0]
    t0 = time.perf_counter()
    smol = LLM.from_pretrained("smollm2-135m-instruct", measure_energy=False)
    load_s = time.perf_counter() - t0
    rss1, peak = rss_mb()
    print(f"SmolLM2 load {load_s:.1f} s; RSS +{rss1 - rss0:.0f} MB after load "
          f"(process {rss1:.0f} MB, peak {peak:.0f} MB)", flush=True)
    n_params = {"smol": sum(p.numel() for p in smol.model.parameters()),
                "tiny": sum(p.numel() for p in tiny.model.parameters())}
    scorers = [
        Scorer(f"tiny LM ({n_params['tiny'] / 1e6:.1f}M)", tiny, None),
        Scorer("SmolLM2, bos <|im_start|>", smol, None),
        Scorer("SmolLM2, prefix <|endoftext|>", smol, "<|endoftext|>"),
    ]

    ppl_rows = []
    for s in scorers:
        for name, texts in [("SLURP devel (held out)", slurp), ("HyPoradise refs", refs)]:
            pw, pt, sec = perplexity(s, texts)
            ppl_rows.append([s.name, name, str(len(texts)), f"{pw:.1f}", f"{pt:.1f}",
                             f"{sec:.0f}"])
            print(f"  {s.name} / {name}: word ppl {pw:.1f}", flush=True)
    print("\nPerplexity (natural log; per word = exp(-sum ln p / words), text after the "
          "model's context)")
    print(table(["model", "text", "sentences", "ppl/word", "ppl/token (own)", "s"], ppl_rows))

    rows = []
    for s in scorers:
        rows += rescoring(s, sets)
    print("\nHyPoradise 5-best rescoring, WER % on the eval halves "
          "(tot_score = -rank + llm_scale * llm_score; llm_scale picked on the dev halves)")
    print(table(["LM", "set", "dev/eval utts", "llm_scale", "1-best", "rescored", "LLM only",
                 "oracle", "rescored (dev)"], rows))

    if not args.skip_attention:
        items = json.loads((data / "hyporadise_nbest/test_ls_clean.json").read_text())
        words = " ".join(it["output"] for it in items[:200]).split()[:1000]
        print("\nSmolLM2 sparse decode attention on real text (HyPoradise references), "
              "16 new tokens, all 30 layers x 9 heads recorded")
        print(table(["backend", "conf", "context", "steps", "mass mean", "mass min",
                     "worst layer mean", "tokens read", "rel. error", "s", "output"],
                    attention_mass(smol, " ".join(words))))
    print(f"\nSmolLM2: {n_params['smol'] / 1e6:.1f}M parameters, load {load_s:.1f} s, "
          f"RSS +{rss1 - rss0:.0f} MB (peak {peak:.0f} MB); 1 torch thread")


if __name__ == "__main__":
    main()
