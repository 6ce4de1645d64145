#!/usr/bin/env bash
# One short GPU check of the runtime, Tactic, Fiddler and the energy meter (under 10 minutes
# on one H200): the `-m gpu` tests, then the Tactic and MoE-offload benches and an energy
# profile at the current clock. Nothing downloads; clocks and other device settings are
# only read, never changed.
#
#   bash tools/gpu_check.sh [OUTDIR]          # default exp/gpu_check
#
# Needs a CUDA build of torch, triton and transformers in `python`; the package need not be
# installed (the checkout is put on PYTHONPATH, with kernels/ as speechlm_kernels as
# pyproject's package-dir maps it). Each step has its own time limit so that one slow step
# cannot eat the others' time; its rc is printed.
set -u
out=${1:-exp/gpu_check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
# the kernel tests' conftest defaults to the interpreter (CPU); on a GPU run the kernels
export TRITON_INTERPRET=0
links=$(mktemp -d)
ln -s "$PWD/kernels" "$links/speechlm_kernels"
export PYTHONPATH="$PWD:$links${PYTHONPATH:+:$PYTHONPATH}"

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.draw \
  --format=csv
python -c 'import sys, torch, triton, transformers
print("python", sys.version.split()[0], "torch", torch.__version__, "triton", triton.__version__,
      "transformers", transformers.__version__, "device", torch.cuda.get_device_name())'

step() {  # step NAME SECONDS CMD...
  local name=$1 secs=$2
  shift 2
  echo "=== $name (limit ${secs} s): $*"
  local t0=$SECONDS
  timeout "$secs" "$@"
  echo "=== $name rc $? in $((SECONDS - t0)) s"
}

step tests 100 python -m pytest -p no:cacheprovider -m gpu -q -rs \
  tests/runtime/test_gpu.py tests/runtime/test_fiddler.py tests/kernels/test_tactic_kernels.py
step tactic 110 python tools/bench/tactic.py --device cuda --dtype bfloat16 \
  --contexts 8192 32768 131072 --batches 1 8 --rounds 5 --out "$out/tactic"
step moe 300 python tools/bench/moe_offload.py --layers 4 --repeats 3 --rounds 3
step energy 30 python -m speechlm.bin.energy profile --iters 2000 --out "$out/energy_profile.json"
nvidia-smi --query-gpu=clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv
