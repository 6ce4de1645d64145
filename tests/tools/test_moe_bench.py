"""tools/bench/moe_offload.py runs end to end on the CPU (a shrunk one-layer Mixtral) and
prints every method's medians and Fiddler's ratios with their spread over the rounds."""
import os
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parents[2] / "tools" / "bench" / "moe_offload.py"


def test_moe_bench_interleaves_rounds_and_prints_spread():
    cmd = [sys.executable, str(BENCH), "--layers", "1", "--shrink", "16", "--steps", "2",
           "--repeats", "1", "--rounds", "2", "--prefill", "16"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout
    assert "median of 2 rounds" in out
    for name in ("fiddler", "lru_experts", "cpu_experts", "transformers_cpu"):
        assert re.search(rf"^\s+{name}\s+\d", out, re.M), name
    ratios = re.findall(r"^fiddler / (\S+)\s+prefill [\d.]+x \[[\d.]+-[\d.]+\]", out, re.M)
    assert ratios == ["lru_experts", "cpu_experts", "transformers_cpu"]
    assert "accelerate skipped: needs a GPU" in out
