#!/usr/bin/env bash
# slurm.pl: submit JOB=1:N as one Slurm array and wait for it (sbatch --wait).
# Extra sbatch options come from $SLURM_OPTS, e.g. export SLURM_OPTS="-p cpu --mem 4G".
exec python -m speechlm.bin.launch --backend slurm --slurm-opts "${SLURM_OPTS:-}" "$@"
