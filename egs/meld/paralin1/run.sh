#!/usr/bin/env bash
# egs/meld/paralin1/run.sh: ParalinGPT (serialized multitask: current sentiment, response
# sentiment, response text) on MELD dialogues with SmolLM2-135M-Instruct + LoRA.
#
#   ./run.sh --quick true           # every stage on small subsets (minutes)
#   ./run.sh                        # the sizes of RESULTS.md
#   ./run.sh --test_csv /path/to/test_sent_emo.csv   # also score a held-out MELD-form CSV
#
# Stages: 1 read and check the CSVs, 2 train the serialized model (context with its
# sentiments), 3 ablations (no context; context without sentiments), 4 evaluate every
# model on dev (and --test_csv), 5 RESULTS.md with a plot.
# Speech embeddings are not in this version: MELD's audio is not available here and the
# speech prefix arrives with the speech-prefix LLM (see README.md).
set -euo pipefail

stage=1; stop_stage=100
meld=                           # default: $SPEECHLM_DATA/meld, ../shared/data/meld
test_csv=                       # a MELD-form CSV never trained on (e.g. test_sent_emo.csv)
quick=false
base=smollm2-135m-instruct
context=3                       # previous turns shown
epochs=1
help_message="usage: $0 [--stage N] [--stop_stage N] [--quick true] [--test_csv FILE]"

cmdline="$0 $*"
. ./path.sh; . ./cmd.sh; . utils/parse_options.sh
. utils/log.sh

if [ -z "${meld}" ]; then
  for d in "${SPEECHLM_DATA:+${SPEECHLM_DATA}/meld}" ../../../../shared/data/meld; do
    [ -n "${d}" ] && [ -f "${d}/train_sent_emo.csv" ] && { meld=${d}; break; }
  done
fi
[ -n "${meld}" ] || { log "MELD CSVs not found: pass --meld DIR or set SPEECHLM_DATA"; exit 1; }
log "MELD: using $(cd "${meld}" && pwd)"
if [ "${quick}" = true ]; then train_windows=120; eval_windows=40; exp=exp/quick
else train_windows=1500; eval_windows=300; exp=exp/full; fi
sets="dev"; [ -z "${test_csv}" ] || sets+=" test"
csv_of() { if [ "$1" = dev ]; then echo "${meld}/dev_sent_emo.csv"; else echo "${test_csv}"; fi; }
common="--context ${context} --no-progress"

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
  stage_log 1 "reading and checking the CSVs"
  for f in "${meld}/train_sent_emo.csv" "${meld}/dev_sent_emo.csv" ${test_csv}; do
    python -m speechlm.bin.paralin check --csv "${f}" --context "${context}"
  done
fi

train_model() {  # name, extra options
  local name=$1; shift
  if [ -f "${exp}/${name}/paralin.json" ]; then log "${exp}/${name}: already trained"; return; fi
  python -m speechlm.bin.paralin train --csv "${meld}/train_sent_emo.csv" --out "${exp}/${name}" \
    --base "${base}" --max-windows "${train_windows}" --epochs "${epochs}" --threads 1 \
    ${common} --overwrite "$@"
}

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
  stage_log 2 "training the serialized multitask model (context ${context}, with sentiments)"
  train_model full
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
  stage_log 3 "ablations: no context; context without its sentiments"
  train_model no_context --no-context
  train_model no_context_sentiment --no-context-sentiment
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
  stage_log 4 "evaluating on ${sets}"
  for name in full no_context no_context_sentiment; do
    for s in ${sets}; do
      [ -f "${exp}/${name}/${s}/scores.json" ] && continue
      python -m speechlm.bin.paralin eval --model "${exp}/${name}" --csv "$(csv_of "${s}")" \
        --out "${exp}/${name}/${s}" --max-windows "${eval_windows}" ${common}
    done
  done
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
  stage_log 5 "RESULTS.md"
  python local/make_results.py --exp "${exp}" --sets ${sets} --cmdline "${cmdline}" \
    --out "${exp}/RESULTS.md"
  cat "${exp}/RESULTS.md"
fi
log "Successfully finished. [elapsed=${SECONDS}s]"
