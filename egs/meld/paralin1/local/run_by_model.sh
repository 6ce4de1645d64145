#!/usr/bin/env bash
# local/run_by_model.sh [run.sh options]: run.sh's stages 1-3, then stages 4-6 one model at a
# time (trained, then evaluated), most important first, then stage 7. The same work as
# ./run.sh, ordered so that a run cut short still has whole rows; run.sh skips what is done.
#   nohup nice -n 10 env OMP_NUM_THREADS=1 local/run_by_model.sh > exp/full.log 2>&1 &
set -euo pipefail
order="full smollm2_head response_only minilm_head emotion no_context no_context_sentiment"
order+=" speech_whisper speech_resemblyzer"
./run.sh --stop_stage 3 "$@"
for m in ${order}; do
  ./run.sh --stage 4 --stop_stage 6 --models "${m}" "$@"
done
./run.sh --stage 7 "$@"
