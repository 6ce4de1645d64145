"""Loading a catalogue GGUF LLM: from the GGUF file vs from its kept dequantized copy.

What every ``speechlm slu predict`` call (and every ``--nj`` worker) pays before its first
ranking. Each load runs in a fresh process (as a recipe's calls do), the two ways
alternating over ``--rounds`` rounds, one torch thread; the child times
``load_model_and_tokenizer`` alone, and the whole process (imports included) is timed too.
The one-time cost, converting and writing the copy, is reported apart.

    python tools/bench/gguf_load.py [--llm smollm2-135m-instruct] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import sys, time, torch
torch.set_num_threads(1)
from speechlm.runtime.loading import load_model_and_tokenizer, resolve_model
t = time.perf_counter()
load_model_and_tokenizer(resolve_model(sys.argv[1]), torch.float32)
print(time.perf_counter() - t)
"""


def run(llm: str, cache: str) -> tuple[float, float]:
    """(load s, process s) of one child process with ``SPEECHLM_GGUF_CACHE=cache``."""
    env = {**os.environ, "SPEECHLM_GGUF_CACHE": cache, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, llm], env=env, check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    return float(out.split()[-1]), time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--llm", default="smollm2-135m-instruct")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(f"{args.llm}, {args.rounds} rounds, load average {os.getloadavg()} "
          f"on {os.cpu_count()} CPUs")  # fmt: skip
    with tempfile.TemporaryDirectory() as cache:
        first = run(args.llm, cache)
        size = sum(f.stat().st_size for f in Path(cache).rglob("*") if f.is_file())
        print(f"one-time: convert and write the copy {first[0]:.1f} s (process {first[1]:.1f} s)"
              f"; the copy takes {size / 2**20:.0f} MiB")
        times: dict[str, list[tuple[float, float]]] = {"gguf": [], "copy": []}
        for r in range(args.rounds):
            for way in ("gguf", "copy") if r % 2 == 0 else ("copy", "gguf"):
                times[way].append(run(args.llm, "off" if way == "gguf" else cache))
    print(f"load average after {os.getloadavg()}")
    print(f"{'load from':10s} {'load s':>8s} {'process s':>10s}")
    for way, ts in times.items():
        print(f"{way:10s} {statistics.median(t for t, _ in ts):8.2f} "
              f"{statistics.median(p for _, p in ts):10.2f}")  # fmt: skip
    ratios = [g[0] / c[0] for g, c in zip(times["gguf"], times["copy"], strict=True)]
    procs = [g[1] / c[1] for g, c in zip(times["gguf"], times["copy"], strict=True)]
    print(f"copy speed-up: load {statistics.median(ratios):.1f}x [{min(ratios):.1f}-"
          f"{max(ratios):.1f}], process {statistics.median(procs):.1f}x "
          f"[{min(procs):.1f}-{max(procs):.1f}] over {args.rounds} rounds")


if __name__ == "__main__":
    main()
