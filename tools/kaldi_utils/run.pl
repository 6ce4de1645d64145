#!/usr/bin/env bash
# run.pl: Kaldi's local job runner, as a thin wrapper of `speechlm launch`.
#   utils/run.pl [--max-jobs-run N] [--mem 4G] [--num-threads N] [--gpu N] \
#       JOB=1:4 exp/log/x.JOB.log cmd ... JOB ...
#   utils/run.pl exp/log/x.log cmd ...          # a single job (no JOB=...)
# --mem, --num-threads and --gpu are accepted as Kaldi's run.pl accepts them and change
# nothing locally (the cluster runners use them); --max-jobs-run caps parallel jobs.
set -euo pipefail
opts=()
while [ $# -gt 0 ]; do
  case "$1" in
    --max-jobs-run) opts+=(--max-parallel "$2"); shift 2 ;;
    --mem|--num-threads|--gpu|--config) shift 2 ;;
    --*) echo "run.pl: unknown option $1 (known: --max-jobs-run, --mem, --num-threads, --gpu, --config)" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [ $# -lt 2 ]; then
  echo "usage: run.pl [options] [JOB=1:N] LOG CMD..." >&2; exit 2
fi
if [[ ! "$1" =~ ^[A-Za-z_]+=[0-9]+:[0-9]+$ ]]; then
  set -- SPEECHLM_SINGLE_JOB=1:1 "$@"   # Kaldi's single-job form: nothing is substituted
fi
exec python -m speechlm.bin.launch --backend local "${opts[@]}" "$@"
