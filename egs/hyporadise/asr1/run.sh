#!/usr/bin/env bash
# egs/hyporadise/asr1/run.sh: second pass on HyPoradise LibriSpeech 5-best lists (no
# first-pass scores: the list order is used as a rank prior) with SmolLM2-135M-Instruct,
# MiniLM and mpnet: LM rescoring, prompting (zero-shot, k-shot, task-activating), GER
# (select / guarded free, zero-shot and LoRA) and discriminative MWER scorers.
#
#   ./run.sh --quick true          # small documented subsets, every method (see RESULTS.md)
#   ./run.sh                       # larger subsets
#   for l in llm1 llm2 llm3 bi bi2 causal gerlora gerlora2; do ./run.sh --stage 3 --stop_stage 3 --lanes $l & done; wait
#   ./run.sh --stage 4             # lanes side by side (2 cores: about 2 h for --quick)
#
# Splits (speechlm.llm.second_pass.nbest: speakers from utterance ids, else contiguous
# blocks of 50 since these files have no ids): training = first speaker-half of
# test-clean (@1); tuning = first half of test-other (@1); report = second half of
# test-other (@2) and of test-clean (@2, one fold of a cross-fit: trained on @1).
# Stages: 1 check the files, 3 train (MWER scorers, GER LoRA) and run every method,
# 4 RESULTS.md + plot.
set -euo pipefail

stage=1; stop_stage=100
data=                                # default: $SPEECHLM_DATA/hyporadise_nbest, ../shared/data/...
quick=false
lanes="llm1 llm2 llm3 bi bi2 causal gerlora gerlora2"  # stage 3 lanes, see below
llm=smollm2-135m-instruct
help_message="usage: $0 [--stage N] [--stop_stage N] [--quick true] [--lanes 'llm1 ... gerlora2']"

cmdline="$0 $*"
. ./path.sh; . ./cmd.sh; . utils/parse_options.sh
. utils/log.sh

if [ -z "${data}" ]; then
  for d in "${SPEECHLM_DATA:+${SPEECHLM_DATA}/hyporadise_nbest}" ../../../../shared/data/hyporadise_nbest; do
    [ -n "${d}" ] && [ -f "${d}/test_ls_other.json" ] && { data=${d}; break; }
  done
fi
[ -n "${data}" ] || { log "N-best files not found: pass --data DIR or set SPEECHLM_DATA"; exit 1; }
clean=${data}/test_ls_clean.json; other=${data}/test_ls_other.json
if [ "${quick}" = true ]; then exp=exp/quick; ndev=20; neval=30; ntrain=80; ntrain_llm=24; epochs=1; ntrain_long=400; ntrain_ger=12; ngen_dev=8; ngen=10
  smollm2_pools="prob mean"
else exp=exp/full; ndev=150; neval=300; ntrain=1200; ntrain_llm=300; epochs=2; ntrain_long=1300; ntrain_ger=300; ngen_dev=${ndev}; ngen=${neval}
  smollm2_pools="prob mean last attention"; fi
dev="${other}@1:${ndev}"; evals="${other}@2:${neval} ${clean}@2:${neval}"
dev_gen="${other}@1:${ngen_dev}"; evals_gen="${other}@2:${ngen} ${clean}@2:${ngen}"
train="${clean}@1:${ntrain}"; train_llm="${clean}@1:${ntrain_llm}"; train_long="${clean}@1:${ntrain_long}"
train_ger="${clean}@1:${ntrain_ger}"
rescore="python -m speechlm.bin.cli rescore --threads 1"
mkdir -p ${exp}
has_lane() { [[ " ${lanes} " == *" $1 "* ]]; }
# method LANE TAG ARGS: run a method into exp/TAG when LANE is chosen, unless its
# result.json is there (resumable) or another lane holds its dir (mkdir is the lock)
method() { local lane=$1 tag=$2; shift 2
  has_lane ${lane} || return 0
  [ -f ${exp}/${tag}/result.json ] && { log "${tag}: done"; return 0; }
  mkdir ${exp}/${tag} 2>/dev/null || { log "${tag}: running in another lane (rm -r ${exp}/${tag} if not)"; return 0; }
  log "${tag}"
  ${rescore} "$@" --dev "${dev}" --nbest ${evals} --out ${exp}/${tag} 2> ${exp}/${tag}/log.txt \
    || { tail -3 ${exp}/${tag}/log.txt; rm -r ${exp}/${tag}; return 1; }
  grep -E "WER" ${exp}/${tag}/log.txt || true; }
# train LANE DIR ARGS: fit a scorer / adapter into DIR unless it is there
train() { local lane=$1 dir=$2; shift 2
  has_lane ${lane} || return 0
  [ -f ${dir}/mwer.json ] || [ -f ${dir}/ger_lora.json ] && { log "${dir}: trained"; return 0; }
  log "train ${dir}"; mkdir -p ${dir}
  ${rescore} train "$@" --out ${dir} 2> ${dir}.log || { tail -3 ${dir}.log; return 1; }; }

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
  log "Stage 1: read the N-best files (notes on bad input), splits: dev ${dev}, eval ${evals}"
  python - "${clean}" "${other}" <<'PY'
import sys
from speechlm.llm.second_pass.nbest import read_nbest, split_by_speaker
for f in sys.argv[1:]:
    items, notes = read_nbest(f)
    a, b = split_by_speaker(items)
    print(f"{f}: {len(items)} utterances, {len(notes)} notes; halves {len(a)} / {len(b)}")
    for n in notes[:5]:
        print("  ", n)
PY
fi

# Lanes (run side by side as separate processes; each method trains then runs):
#   llm1: LM and prompt rescoring    llm2: k-shot similar + task-activating prompting
#   llm3: zero-shot GER              bi, bi2: MWER MiniLM / mpnet
#   causal: MWER SmolLM2 + likelihood baseline    gerlora: GER LoRA (select; gerlora2:
#   free, once gerlora has trained the adapter)
if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
  log "Stage 2-3: train and run every method (lanes: ${lanes}), tuned on ${dev}"
  method llm1 lm --method lm --llm ${llm}
  method llm1 lm_norm --method lm_norm --llm ${llm}
  method llm1 prompt --method prompt --llm ${llm}
  method llm2 prompt_3shot_similar --method prompt --llm ${llm} --train "${train}" --shots 3 --demos similar
  method llm2 tap_3shot_similar --method tap --llm ${llm} --train "${train}" --shots 3 --demos similar
  method llm3 ger-select --method ger-select --llm ${llm}
  # free GER generates ~2x the 1-best's tokens: on smaller subsets (--quick) to finish
  dev="${dev_gen}" evals="${evals_gen}" method llm3 ger-free --method ger-free --llm ${llm}
  for p in mean attention; do
    train bi ${exp}/models/mwer_minilm_${p} --method mwer --model minilm-l6 --pooling ${p} --train "${train}" --epochs ${epochs}
  done
  train bi ${exp}/models/mwer_minilm_mean_frozen --method mwer --model minilm-l6 --pooling mean --freeze --train "${train}" --epochs ${epochs}
  # the same with 5x the data, 10x the head and 2x the encoder learning rate (the short runs barely move)
  train bi2 ${exp}/models/mwer_minilm_mean_long --method mwer --model minilm-l6 --pooling mean --train "${train_long}" --lr 1e-2 --backbone-lr 1e-4
  method bi2 mwer_minilm_mean_long --method mwer --model ${exp}/models/mwer_minilm_mean_long
  train bi ${exp}/models/mwer_mpnet_mean --method mwer --model mpnet-base --pooling mean --train "${train_llm}"
  for m in mwer_minilm_mean mwer_minilm_attention mwer_minilm_mean_frozen mwer_mpnet_mean; do
    method bi ${m} --method mwer --model ${exp}/models/${m}
  done
  for p in ${smollm2_pools}; do
    train causal ${exp}/models/mwer_smollm2_${p} --method mwer --model ${llm} --pooling ${p} --train "${train_llm}"
    method causal mwer_smollm2_${p} --method mwer --model ${exp}/models/mwer_smollm2_${p}
  done
  train causal ${exp}/models/lik_smollm2_prob --method mwer --model ${llm} --pooling prob --objective likelihood --train "${train_llm}"
  method causal lik_smollm2_prob --method mwer --model ${exp}/models/lik_smollm2_prob
  # batch 1: a batch of 4 GER prompts (~350 tokens, 49k-word softmax) was killed for memory
  train gerlora ${exp}/models/ger_lora --method ger-lora --llm ${llm} --train "${train_ger}"
  method gerlora ger-select_lora --method ger-select --llm ${llm} --adapter ${exp}/models/ger_lora
  [ -f ${exp}/models/ger_lora/ger_lora.json ] && \
    dev="${dev_gen}" evals="${evals_gen}" method gerlora2 ger-free_lora --method ger-free --llm ${llm} --adapter ${exp}/models/ger_lora
  method llm1 prompt_3shot_random --method prompt --llm ${llm} --train "${train}" --shots 3
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
  log "Stage 4: ${exp}/RESULTS.md and RESULTS.png"
  python local/make_results.py ${exp} "${cmdline}"
fi
