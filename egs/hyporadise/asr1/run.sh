#!/usr/bin/env bash
# egs/hyporadise/asr1/run.sh: second pass on HyPoradise LibriSpeech 5-best lists (no
# first-pass scores: the list order is used as a rank prior) with SmolLM2-135M-Instruct,
# MiniLM and mpnet: LM rescoring, prompting (zero-shot, k-shot, task-activating), GER
# (select / guarded free, zero-shot and LoRA) and discriminative MWER scorers.
#
#   ./run.sh --size quick          # small documented subsets, every method (exp/quick)
#   ./run.sh --size medium         # the cheap methods on dev 300 / report 300+300+300 (exp/medium)
#   ./run.sh --size prompt --folds 1   # the prompt family on test-other only (exp/prompt)
#   ./run.sh                       # larger subsets, every method (exp/full)
#   for l in llm1 llm2 llm3 bi bi2 causal gerlora gerlora2; do ./run.sh --stage 3 --stop_stage 3 --lanes $l & done; wait
#   ./run.sh --stage 4             # lanes side by side (2 cores: about 2 h for --quick)
#
# Splits (speechlm.llm.second_pass.nbest: speakers from utterance ids, else contiguous
# blocks of 50 since these files have no ids): tuning = first speaker-half of test-other
# (@1); report = second half of test-other (@2) and all of test-clean by cross-fitting:
# a trained method is trained on test-clean @1 and reported on @2 (fold 1), and trained
# on @2 and reported on @1 (fold 2, dirs *_f2); stage 4 pools the two halves' errors.
# Stages: 1 check the files, 3 train (MWER/PLL scorers, GER LoRA) and run every method,
# 4 RESULTS.md + plot.
set -euo pipefail

stage=1; stop_stage=100
data=                                # default: $SPEECHLM_DATA/hyporadise_nbest, ../shared/data/...
size=full                            # quick | medium | prompt | full (see README.md: subsets)
quick=false                          # --quick true == --size quick
lanes=                               # stage 3 lanes (default: all of the size's), see below
nclean=                              # test-clean utterances per half (default: the size's neval; 0: none)
folds="1 2"                          # cross-fit folds of the trained methods (train @f, report the other half of test-clean)
llm=smollm2-135m-instruct
help_message="usage: $0 [--stage N] [--stop_stage N] [--size quick|medium|prompt|full] [--lanes 'llm1 ... gerlora2'] [--folds '1 2'] [--nclean N]"

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
[ "${quick}" = true ] && size=quick
pll_epochs=3                         # the MLM head starts from random: more passes than MWER
all_lanes="llm1 llm2 llm3 bi bi2 causal gerlora gerlora2"
case ${size} in
  quick) ndev=20; neval=30; ntrain=80; ntrain_llm=24; epochs=1; ntrain_long=400; ntrain_ger=12; ngen_dev=8; ngen=10
    smollm2_pools="prob mean" ;;
  # the cheap methods only (lane "cheap"), on sets large enough for the tuning to mean something
  medium) ndev=300; neval=300; ntrain=1000; ntrain_llm=300; epochs=1; ntrain_long=1000; ntrain_ger=0; ngen_dev=0; ngen=0
    smollm2_pools=""; all_lanes="cheap" ;;
  # the prompt family only (lane "prompt": LM sum as the reference row, zero-shot, 3-shot
  # random / similar, task-activating, GER select; lane "promptgen": GER free + guard), on
  # test-other alone (test-clean's 1-best is 1.4-2.4%: little to fix); sizes from the
  # measured cost, ~0.5-0.9 s per utterance and method on the 2 shared cores (README.md)
  prompt) ndev=300; neval=300; ntrain=1000; ntrain_llm=0; epochs=1; ntrain_long=0; ntrain_ger=0
    ngen_dev=100; ngen=150; smollm2_pools=""; all_lanes="prompt"; nclean=${nclean:-0} ;;
  full) ndev=150; neval=300; ntrain=1200; ntrain_llm=300; epochs=2; ntrain_long=1300; ntrain_ger=300; ngen_dev=${ndev}; ngen=${neval}
    smollm2_pools="prob mean last attention" ;;
  *) log "--size must be quick, medium, prompt or full, got '${size}'"; exit 1 ;;
esac
exp=exp/${size}; lanes=${lanes:-${all_lanes}}; nclean=${nclean:-${neval}}
# Roles (README.md): tune on test-other @1; report on test-other @2 and on test-clean by
# cross-fitting. Methods that learn nothing from the training split run on both halves of
# test-clean at once (evals_all); a trained method runs once per fold f (fold_of): trained
# on test-clean @f, reported on test-other @2 (fold 1) and the other half of test-clean.
dev="${other}@1:${ndev}"; evals="${other}@2:${neval}"; evals_all=${evals}
dev_gen="${other}@1:${ngen_dev}"; evals_gen="${other}@2:${ngen}"
if [ ${nclean} -gt 0 ]; then
  evals+=" ${clean}@2:${nclean}"; evals_all+=" ${clean}@2:${nclean} ${clean}@1:${nclean}"
  evals_gen+=" ${clean}@2:${ngen} ${clean}@1:${ngen}"
fi
# fold_of F: sets sfx (result/model dir suffix), ev (report sets), ev_gen (free GER's),
# and th (the training half of test-clean) for fold F (fold 2 reports test-clean alone:
# nothing to do without it)
fold_of() {
  if [ "$1" = 1 ]; then sfx=; th=1; ev="${evals}"; ev_gen="${other}@2:${ngen}"
    if [ ${nclean} -gt 0 ]; then ev_gen+=" ${clean}@2:${ngen}"; fi
  else sfx=_f2; th=2; ev="${clean}@1:${nclean}"; ev_gen="${clean}@1:${ngen}"; fi; }
rescore="python -m speechlm.bin.cli rescore --threads 1"
mkdir -p ${exp}
has_lane() { [[ " ${lanes} " == *" $1 "* ]]; }
# method LANE TAG ARGS: run a method into exp/TAG when LANE is chosen, unless its
# result.json is there, or a live process holds its dir (exp/TAG/pid). A run that was
# killed or failed resumes from its per-utterance results (exp/TAG/partial-*.jsonl;
# rm -r exp/TAG to start over)
method() { local lane=$1 tag=$2 pid; shift 2
  has_lane ${lane} || return 0
  [ -f ${exp}/${tag}/result.json ] && { log "${tag}: done"; return 0; }
  if ! mkdir ${exp}/${tag} 2>/dev/null; then
    pid=$(cat ${exp}/${tag}/pid 2>/dev/null || true)
    [ -n "${pid}" ] && kill -0 ${pid} 2>/dev/null && { log "${tag}: running in another lane (pid ${pid})"; return 0; }
    log "${tag}: resuming from ${exp}/${tag}/partial-*.jsonl"
  fi
  echo $$ > ${exp}/${tag}/pid
  log "${tag}"
  ${rescore} "$@" --dev "${dev}" --nbest ${evals} --out ${exp}/${tag} 2>> ${exp}/${tag}/log.txt \
    || { tail -3 ${exp}/${tag}/log.txt; rm -f ${exp}/${tag}/pid; return 1; }
  rm -f ${exp}/${tag}/pid
  grep -E "WER" ${exp}/${tag}/log.txt | tail -n $(( $(wc -w <<< "${evals}") + 1 )) || true; }
# train LANE DIR ARGS: fit a scorer / adapter into DIR unless it is there
train() { local lane=$1 dir=$2; shift 2
  has_lane ${lane} || return 0
  { [ -f ${dir}/mwer.json ] || [ -f ${dir}/pll.json ] || [ -f ${dir}/ger_lora.json ]; } && { log "${dir}: trained"; return 0; }
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
#   llm3: zero-shot GER              bi, bi2: MWER MiniLM / mpnet, PLL MiniLM
#   causal: MWER SmolLM2 + likelihood baseline    gerlora: GER LoRA (select; gerlora2:
#   free, once gerlora has trained the adapter)
#   cheap (--size medium): LM sum and length-normalised, MWER MiniLM mean, PLL MiniLM,
#   likelihood SmolLM2, one after the other in one process at a time
#   mwerfp: MWER MiniLM mean trained with the rank prior in the loss alone (also in bi2, cheap)
if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
  log "Stage 2-3: train and run every method (lanes: ${lanes}, folds: ${folds}), tuned on ${dev}"
  # untrained: both halves of test-clean at once
  for l in llm1 cheap prompt; do  # LM sum: the prompt family's reference row
    evals="${evals_all}" method ${l} lm --method lm --llm ${llm}
  done
  for l in llm1 cheap; do evals="${evals_all}" method ${l} lm_norm --method lm_norm --llm ${llm}; done
  for l in llm1 prompt; do evals="${evals_all}" method ${l} prompt --method prompt --llm ${llm}; done
  for l in llm3 prompt; do evals="${evals_all}" method ${l} ger-select --method ger-select --llm ${llm}; done
  # free GER generates ~2x the 1-best's tokens: on smaller subsets (--quick) to finish
  for l in llm3 promptgen; do
    dev="${dev_gen}" evals="${evals_gen}" method ${l} ger-free --method ger-free --llm ${llm}
  done
  for f in ${folds}; do fold_of ${f}
    [ ${f} = 2 ] && [ ${nclean} -eq 0 ] && { log "fold 2 reports test-clean alone: skipped (--nclean 0)"; continue; }
    log "fold ${f}: train on ${clean}@${th}, report on ${ev}"
    # the medium run's scorers, cheapest first (the same settings as bi2 / causal / PLL)
    train cheap ${exp}/models/mwer_minilm_mean_long${sfx} --method mwer --model minilm-l6 --pooling mean --train "${clean}@${th}:${ntrain_long}" --lr 1e-2 --backbone-lr 1e-4
    evals="${ev}" method cheap mwer_minilm_mean_long${sfx} --method mwer --model ${exp}/models/mwer_minilm_mean_long${sfx}
    for l in causal cheap; do  # likelihood baseline (causal)
      train ${l} ${exp}/models/lik_smollm2_prob${sfx} --method mwer --model ${llm} --pooling prob --objective likelihood --train "${clean}@${th}:${ntrain_llm}"
      evals="${ev}" method ${l} lik_smollm2_prob${sfx} --method mwer --model ${exp}/models/lik_smollm2_prob${sfx}
    done
    for l in bi cheap; do  # pseudo-log-likelihood baseline (bidirectional): MLM head fine-tuned on the references
      train ${l} ${exp}/models/pll_minilm${sfx} --method pll --model minilm-l6 --train "${clean}@${th}:${ntrain}" --epochs ${pll_epochs} --backbone-lr 1e-4
      evals="${ev}" method ${l} pll_minilm${sfx} --method pll --model ${exp}/models/pll_minilm${sfx}
    done
    for l in llm2 prompt; do
      evals="${ev}" method ${l} prompt_3shot_similar${sfx} --method prompt --llm ${llm} --train "${clean}@${th}:${ntrain}" --shots 3 --demos similar
      evals="${ev}" method ${l} tap_3shot_similar${sfx} --method tap --llm ${llm} --train "${clean}@${th}:${ntrain}" --shots 3 --demos similar
    done
    for p in mean attention; do
      train bi ${exp}/models/mwer_minilm_${p}${sfx} --method mwer --model minilm-l6 --pooling ${p} --train "${clean}@${th}:${ntrain}" --epochs ${epochs}
    done
    train bi ${exp}/models/mwer_minilm_mean_frozen${sfx} --method mwer --model minilm-l6 --pooling mean --freeze --train "${clean}@${th}:${ntrain}" --epochs ${epochs}
    # the same with more data, 10x the head and 2x the encoder learning rate (the short runs barely move)
    train bi2 ${exp}/models/mwer_minilm_mean_long${sfx} --method mwer --model minilm-l6 --pooling mean --train "${clean}@${th}:${ntrain_long}" --lr 1e-2 --backbone-lr 1e-4
    evals="${ev}" method bi2 mwer_minilm_mean_long${sfx} --method mwer --model ${exp}/models/mwer_minilm_mean_long${sfx}
    # the same trained on the interpolated cost (scorer - rank prior), as the paper trains
    # with the first-pass score: the scorer learns what the list order misses
    for l in bi2 cheap mwerfp; do
      train ${l} ${exp}/models/mwer_minilm_mean_fp${sfx} --method mwer --model minilm-l6 --pooling mean --with-first-pass --train "${clean}@${th}:${ntrain_long}" --lr 1e-2 --backbone-lr 1e-4
      evals="${ev}" method ${l} mwer_minilm_mean_fp${sfx} --method mwer --model ${exp}/models/mwer_minilm_mean_fp${sfx}
    done
    train bi ${exp}/models/mwer_mpnet_mean${sfx} --method mwer --model mpnet-base --pooling mean --train "${clean}@${th}:${ntrain_llm}"
    for m in mwer_minilm_mean mwer_minilm_attention mwer_minilm_mean_frozen mwer_mpnet_mean; do
      evals="${ev}" method bi ${m}${sfx} --method mwer --model ${exp}/models/${m}${sfx}
    done
    for p in ${smollm2_pools}; do
      train causal ${exp}/models/mwer_smollm2_${p}${sfx} --method mwer --model ${llm} --pooling ${p} --train "${clean}@${th}:${ntrain_llm}"
      evals="${ev}" method causal mwer_smollm2_${p}${sfx} --method mwer --model ${exp}/models/mwer_smollm2_${p}${sfx}
    done
    # batch 1: a batch of 4 GER prompts (~350 tokens, 49k-word softmax) was killed for memory
    train gerlora ${exp}/models/ger_lora${sfx} --method ger-lora --llm ${llm} --train "${clean}@${th}:${ntrain_ger}"
    evals="${ev}" method gerlora ger-select_lora${sfx} --method ger-select --llm ${llm} --adapter ${exp}/models/ger_lora${sfx}
    [ -f ${exp}/models/ger_lora${sfx}/ger_lora.json ] && \
      dev="${dev_gen}" evals="${ev_gen}" method gerlora2 ger-free_lora${sfx} --method ger-free --llm ${llm} --adapter ${exp}/models/ger_lora${sfx}
    for l in llm1 prompt; do
      evals="${ev}" method ${l} prompt_3shot_random${sfx} --method prompt --llm ${llm} --train "${clean}@${th}:${ntrain}" --shots 3
    done
  done
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
  log "Stage 4: ${exp}/RESULTS.md and RESULTS.png"
  python local/make_results.py ${exp} "${cmdline}"
fi
