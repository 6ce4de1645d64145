#!/usr/bin/env bash
# slurm.pl: submit JOB=1:N as one Slurm array and wait for it (sbatch --wait).
#   utils/slurm.pl [--mem 4G] [--num-threads N] [--gpu N] [--max-jobs-run N] JOB=1:4 LOG CMD...
#   utils/slurm.pl LOG CMD...                    # a single job
# Extra sbatch options come from $SLURM_OPTS, e.g. export SLURM_OPTS="-p cpu".
set -euo pipefail
sbatch_opts=${SLURM_OPTS:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --mem) sbatch_opts+=" --mem=$2"; shift 2 ;;
    --num-threads) sbatch_opts+=" --cpus-per-task=$2"; shift 2 ;;
    --gpu) [ "$2" -gt 0 ] && sbatch_opts+=" --gres=gpu:$2"; shift 2 ;;
    --max-jobs-run) export SPEECHLM_SLURM_MAX_JOBS="$2"; shift 2 ;;
    --config) shift 2 ;;
    --*) echo "slurm.pl: unknown option $1 (known: --mem, --num-threads, --gpu, --max-jobs-run, --config)" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [ $# -lt 2 ]; then
  echo "usage: slurm.pl [options] [JOB=1:N] LOG CMD..." >&2; exit 2
fi
if [[ ! "$1" =~ ^[A-Za-z_]+=[0-9]+:[0-9]+$ ]]; then
  set -- SPEECHLM_SINGLE_JOB=1:1 "$@"
fi
exec python -m speechlm.bin.launch --backend slurm --slurm-opts "${sbatch_opts}" "$@"
