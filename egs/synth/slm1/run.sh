#!/usr/bin/env bash
# egs/synth/slm1/run.sh: Align-SLM on synthetic speech. A textless unit LM (Whisper-tiny
# encoder frames -> k-means units -> small Llama), improved by DPO on continuations judged
# through a unit->text CTC recognizer and SmolLM2; likelihood fine-tuning as the ablation.
#
#   ./run.sh --quick true      # every stage on small sizes (under 15 min on 2 CPU cores)
#   ./run.sh                   # the sizes of exp/full/RESULTS.md
#
# Stages: 1 text + eval items, 2 synthesis (Piper joe + espeak voices), 3 units (fit
# k-means on train), 4 unit LM (speechlm lm train), 5 CTC recognizer + judge check,
# 6 DPO rounds (curriculum: rising margin), 7 likelihood-FT ablation, 8 evaluation,
# 9 RESULTS.md + plot. Every stage skips work already done; rounds resume.
set -euo pipefail

stage=1; stop_stage=100
data_root=                      # default: $SPEECHLM_DATA or ../shared/data
quick=false
judge=llm                       # llm (SmolLM2 log-prob) or embedding (MiniLM cosine)
margins="0.2 0.4 0.6"           # one DPO round per margin (curriculum)
seed=0
help_message="usage: $0 [--stage N] [--stop_stage N] [--quick true] [--judge llm|embedding]"

cmdline="$0 $*"
. ./path.sh; . ./cmd.sh; . utils/parse_options.sh
. utils/log.sh

if [ -z "${data_root}" ]; then
  for d in "${SPEECHLM_DATA:-}" ../../../../shared/data ../../../shared/data; do
    [ -n "${d}" ] && [ -f "${d}/slurp/lm_train_text.txt" ] && { data_root=${d}; break; }
  done
fi
[ -n "${data_root}" ] || { log "data not found: pass --data_root DIR or set SPEECHLM_DATA"; exit 1; }
if [ "${quick}" = true ]; then
  exp=exp/quick; lines=250; n_items=40; n_dev=24; k=100; lm_epochs=6; ctc_epochs=10; ears=200
  n_prompts=40; n_eval_prompts=24; margins="0.2 0.4"; max_tokens=40
else
  exp=exp/full; lines=1000; n_items=100; n_dev=60; k=200; lm_epochs=6; ctc_epochs=10; ears=6000
  n_prompts=80; n_eval_prompts=30; max_tokens=50
fi
data=${exp}/data
slm="python -m speechlm.bin.slm"
threads=1

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
  stage_log 1 "training text (SLURP + MELD train turns), dev prompts, eval items"
  [ -f "${data}/text/prepare.json" ] || ${slm} prepare --slurp "${data_root}/slurp/lm_train_text.txt" \
    --meld "${data_root}/meld" --out "${data}/text" --slurp-lines ${lines} --meld-turns ${lines} \
    --dev-prompts ${n_dev} --lexical ${n_items} --syntactic ${n_items} --cloze ${n_items} \
    --ears-lines ${ears} --seed ${seed}
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
  stage_log 2 "synthesis: one voice per line (Piper joe x2 renditions, espeak en-us + 8 sampled)"
  synth="python -m speechlm.bin.synth_data_dir --num-threads ${threads}"
  SECONDS_BEFORE=${SECONDS}
  ${synth} --text "${data}/text/train_text" --out "${data}/train" --speaker-prefix tr \
    --voices piper:joe,espeak:en-us,espeak:sampled --piper-renditions 2 --num-voices 8 \
    --voices-per-line 1 --seed ${seed}
  ${synth} --text "${data}/text/dev_text" --out "${data}/dev" --speaker-prefix dv \
    --voices piper:joe,espeak:en-us,espeak:sampled --piper-renditions 2 --num-voices 8 \
    --voices-per-line 1 --seed $((seed + 1))
  # the recognizer's extra speech (ears_text: none of the LM's, dev or eval lines), same voices
  [ ! -f "${data}/text/ears_text" ] || ${synth} --text "${data}/text/ears_text" \
    --out "${data}/ears" --speaker-prefix ea --voices piper:joe,espeak:en-us,espeak:sampled \
    --piper-renditions 2 --num-voices 8 --voices-per-line 1 --seed $((seed + 2))
  # both sides of an eval pair must share a voice: one voice for all items
  ${synth} --text "${data}/text/eval_text" --out "${data}/eval" --speaker-prefix ev \
    --voices espeak:en-us --seed ${seed}
  [ -f "${data}/synth_seconds" ] || echo $((SECONDS - SECONDS_BEFORE)) > "${data}/synth_seconds"
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
  stage_log 3 "units: Whisper tiny.en encoder -> k-means K=${k} (fit on train) -> de-duplicated"
  [ -f "${data}/train/units" ] || ${slm} units --data-dir "${data}/train" --km "${exp}/km" --fit \
    --k ${k} --seed ${seed} --out "${data}/train/units"
  for s in dev eval ears; do
    [ -d "${data}/${s}" ] || continue
    [ -f "${data}/${s}/units" ] || ${slm} units --data-dir "${data}/${s}" --km "${exp}/km" \
      --out "${data}/${s}/units"
  done
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
  stage_log 4 "unit LM from scratch through the LM trainer (Llama, word-level unit tokenizer)"
  ${slm} lm-data --km "${exp}/km" --units "${data}/train/units" --out "${exp}/lm_data"
  [ -f "${exp}/base/train_report.json" ] || python -m speechlm.bin.lm train \
    --text "${exp}/lm_data/units.txt" --tokenizer "${exp}/lm_data/tokenizer" --out "${exp}/base" \
    --layers 4 --hidden 256 --heads 4 --context-length 256 --epochs ${lm_epochs} \
    --batch-size 16 --lr 2e-3 --warmup-steps 30 --threads ${threads} --no-progress
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
  stage_log 5 "unit -> text CTC recognizer; which judge prefers true continuations?"
  ears_sets=train; [ ! -f "${data}/ears/units" ] || ears_sets="train ears"
  [ -f "${exp}/ctc/ctc.json" ] || ${slm} train-ctc --km "${exp}/km" \
    --units $(printf "${data}/%s/units " ${ears_sets}) --data-dir $(printf "${data}/%s " ${ears_sets}) \
    --out "${exp}/ctc" --encoder conv --epochs ${ctc_epochs} --threads ${threads}
  [ -f "${exp}/judge_check.json" ] || ${slm} judge-check --km "${exp}/km" --ctc "${exp}/ctc" \
    --units "${data}/dev/units" --data-dir "${data}/dev" --out "${exp}/judge_check.json"
fi

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
  stage_log 6 "DPO rounds (judge ${judge}, margins ${margins}), reference = base"
  # the gate: pairs carry semantic feedback only if the judge, through the recognizer, tells
  # true continuations from others; say so loudly when it cannot (the rounds still run)
  python - "${exp}/judge_check.json" "${judge}" <<'PY' || true
import json, sys
rows = json.load(open(sys.argv[1]))
acc = [r["accuracy"] for r in rows if r["judge"] == sys.argv[2] and r.get("ears", "ctc") == "ctc"]
if acc and acc[0] < 0.6:
    print(f"WARNING: judge {sys.argv[2]!r} prefers true continuations only {acc[0]:.2f} of the "
          "time through the recognizer (chance 0.5): the DPO pairs are close to noise")
PY
  policy=${exp}/base; r=0
  for m in ${margins}; do
    r=$((r + 1))
    ${slm} round --policy "${policy}" --ref "${exp}/base" --prompts "${data}/train/units" \
      --max-prompts ${n_prompts} --ctc "${exp}/ctc" --km "${exp}/km" --judge ${judge} \
      --margin ${m} --max-tokens ${max_tokens} --seed ${r} --out "${exp}/dpo_r${r}" \
      --threads ${threads}
    policy=${exp}/dpo_r${r}/model
  done
fi

if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ]; then
  stage_log 7 "ablation: likelihood fine-tuning of base on the chosen continuations of all rounds"
  n_rounds=$(echo ${margins} | wc -w)
  ${slm} ft --policy "${exp}/base" --pairs "${exp}"/dpo_r*/pairs.jsonl --out "${exp}/ft" \
    --epochs $((2 * n_rounds)) --threads ${threads}
fi

if [ ${stage} -le 8 ] && [ ${stop_stage} -ge 8 ]; then
  stage_log 8 "evaluation: lexical, syntactic, cloze, judge score, perplexity, diversity"
  mkdir -p "${exp}/eval"
  models=(); outs=()
  for m in base $(cd "${exp}" && ls -d dpo_r* | sort -V) ft; do
    model=${exp}/${m}; [ -d "${model}/model" ] && model=${model}/model
    [ -f "${exp}/eval/${m}.json" ] || { models+=("${model}"); outs+=("${exp}/eval/${m}.json"); }
  done
  # one process for all models: the judge and the recognizer load once
  [ ${#models[@]} -eq 0 ] || ${slm} evaluate --model "${models[@]}" --out "${outs[@]}" \
    --items "${data}/text/items.jsonl" --item-units "${data}/eval/units" \
    --prompts "${data}/dev/units" --max-prompts ${n_eval_prompts} --ctc "${exp}/ctc" \
    --km "${exp}/km" --judge ${judge} --max-tokens ${max_tokens} --threads ${threads}
fi

if [ ${stage} -le 9 ] && [ ${stop_stage} -ge 9 ]; then
  stage_log 9 "RESULTS.md + plot"
  python local/make_results.py --exp "${exp}" --cmdline "${cmdline}" --out "${exp}/RESULTS.md"
  cat "${exp}/RESULTS.md"
fi
log "Successfully finished. [elapsed=${SECONDS}s]"
