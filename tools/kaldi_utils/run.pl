#!/usr/bin/env bash
# run.pl: Kaldi's local job runner, as a thin wrapper of `speechlm launch`.
#   utils/run.pl JOB=1:4 exp/log/x.JOB.log cmd ... JOB ...
exec python -m speechlm.bin.launch --backend local "$@"
