#!/usr/bin/env bash
# local/lora_slu.sh: LoRA SLU on the recipe's LLM beside in-context learning (issue 15, item 4).
# --per_intent sentences of each intent are drawn from the few-shot pool (never dev or test),
# spoken by the recipe's voices (Piper joe and sampled espeak-ng voices, one per sentence,
# with noise and reverb, as the test sets) and decoded by the same Whisper first pass; the
# adapter is trained (`speechlm slu train --mode lora`) on each sentence's text, its noised
# WCN and N-best copies, and the real 1-best, N-best and WCN of its speech; the test sets are
# then read as each input, without shots. EXP/RESULTS_lora_<model>.md compares it with ICL.
#
#   local/lora_slu.sh --data data/snips_full --exp exp/snips_full [--per_intent 30] [--epochs 2] \
#     [--batch_size 16]
#
# Needs stages 1-2 (and 5 for the ICL columns) of run.sh for the same --data/--exp. Every
# step skips finished work.
set -euo pipefail

data=; exp=
asr_model=whisper-tiny.en; nbest=5   # a catalogue Whisper model or pocketsphinx (run.sh's)
ps_nbest=10
llm=smollm2-135m-instruct
per_intent=30                   # training sentences per intent
epochs=2
batch_size=16                   # examples per step
sets="test"; voices="piper espeak"
inputs="text 1best nbest wcn oracle"  # also nbest_marg, wcn_cal, wcn_marg (run.sh's stage 3
                                    # calibrated WCN: each of its 4 best paths classified)
wcn_threshold=0.1
selection=embedding             # the ICL run compared against
seed=0
nj=1                            # slu predict worker processes (each its own LM)
cmdline="$0 $*"
. ./path.sh; . utils/parse_options.sh
. utils/log.sh
. local/first_pass.sh
. local/predict_icl.sh
. local/spoken_pool.sh
[ -n "${data}" ] && [ -n "${exp}" ] || { log "usage: $0 --data DIR --exp DIR [options]"; exit 1; }
train=${data}/spoken_pool_${per_intent}   # spoken_pool's dirs
dec=${exp}/${asr_model}/decode_spoken_pool_${per_intent}
tag=${per_intent}_e${epochs}_b${batch_size}
slu=${exp}/slu_lora_${asr_model}_${tag}
spoken_pool "${data}" "${exp}" "${asr_model}" "${per_intent}" "${seed}"

if [ ! -f "${slu}/train_report.json" ]; then
  log "LoRA on ${llm}: text + noised copies + the decode of the training speech -> ${slu}"
  # --overwrite replaces only a dir a killed run left without train_report.json
  python -m speechlm.bin.slu train --mode lora --llm "${llm}" --overwrite --no-progress \
    --train-jsonl "${data}/local/spoken_pool_${per_intent}.jsonl" --train-decode-dir "${dec}" \
    --train-data-dir "${train}" --epochs "${epochs}" --batch-size "${batch_size}" --wcn-threshold "${wcn_threshold}" \
    --seed "${seed}" --out "${slu}"
fi

for s in ${sets}; do
  for v in ${voices}; do
    kinds=${inputs}  # the reference text is the same sentences for every voice: once
    [ "${v}" = "${voices%% *}" ] || kinds=$(echo " ${inputs} " | sed 's/ text / /')
    # shellcheck disable=SC2086
    predict_icl --slu "${slu}" --out "${exp}/${asr_model}/lora_${tag}/${s}_${v}" - \
      "${asr_model}" "${s}" "${v}" ${kinds}
  done
done
# shellcheck disable=SC2086
python local/lora_results.py --exp "${exp}" --model "${asr_model}" --sets ${sets} \
  --voices ${voices} --inputs ${inputs} --lora "lora_${tag}" \
  --slu_dir "${slu}" --selection "${selection}" --cmdline "${cmdline}"
log "Successfully finished. [elapsed=${SECONDS}s]"
