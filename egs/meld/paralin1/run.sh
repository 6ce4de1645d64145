#!/usr/bin/env bash
# egs/meld/paralin1/run.sh: ParalinGPT (serialized multitask: current sentiment, response
# sentiment, response text) on MELD dialogues with SmolLM2-135M-Instruct + LoRA.
#
#   ./run.sh --quick true           # every stage on small subsets (minutes)
#   ./run.sh                        # the sizes of RESULTS.md
#   ./run.sh --test_csv /path/to/test_sent_emo.csv   # also score a held-out MELD-form CSV
#
# Stages: 1 read and check the CSVs, 2 speech: synthesize every turn the windows show
# (Piper and espeak-ng voices, one per speaker within a dialogue) or take --wav_scp, 3 speech
# embeddings (pooled Whisper-tiny states; Resemblyzer), cached on disk by content, 4 train the
# serialized model (context with its sentiments), 5 ablations and baselines (no context;
# context without sentiments; with speech embeddings, each kind; with emotion; single-task
# response generation; SmolLM2 and MiniLM sequence classifiers), 6 evaluate every model on
# dev (and --test_csv), 7 RESULTS.md with a plot and the stage times.
# Synthetic speech carries no emotion: no gain is expected from its embeddings; with real
# recordings pass --wav_scp (a Kaldi wav.scp per set, ids dia<D>_utt<III> or MELD's
# dia<D>_utt<I>; "{set}" in the path becomes train, dev or test).
set -euo pipefail

stage=1; stop_stage=100
meld=                           # default: $SPEECHLM_DATA/meld, ../shared/data/meld
test_csv=                       # a MELD-form CSV never trained on (e.g. test_sent_emo.csv)
wav_scp=                        # real recordings: e.g. /data/meld/{set}/wav.scp
quick=false
base=smollm2-135m-instruct
context=3                       # previous turns shown
epochs=1
seed=0                          # LoRA / head init and batch order (N > 0: exp/<size>_seedN)
speech_kinds="whisper resemblyzer"
models="full no_context no_context_sentiment speech_whisper speech_resemblyzer emotion"
models+=" response_only smollm2_head minilm_head"
emb_cache=                      # speech embeddings by encoder and audio content (default:
                                # data/<size>/emb_cache)
help_message="usage: $0 [--stage N] [--stop_stage N] [--quick true] [--test_csv FILE] [--wav_scp PATTERN] [--models LIST]"

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
# Sizes: what fits this machine (2 shared CPU cores, one torch thread per job; README.md
# "Sizes and time"): a LoRA step of 8 windows takes ~10 s, evaluating ~1.3 s per window.
if [ "${quick}" = true ]; then train_windows=16; eval_windows=8; max_new_tokens=20; size=quick
else train_windows=160; eval_windows=80; max_new_tokens=40; size=full; fi
# --seed N (N > 0): the LLM models trained again with another seed into exp/<size>_seedN
# (same data, windows and speech embeddings), for the spread of a row
exp=exp/${size}; [ "${seed}" = 0 ] || exp+=_seed${seed}; data=data/${size}
emb_cache=${emb_cache:-${data}/emb_cache}
base_dir=data/base              # the base LLM as float32 safetensors (a GGUF dequantizes slowly)
mkdir -p "${exp}/timing"
stage_t0=${SECONDS}
took() {  # stage: its wall time in this invocation (and for which models) -> exp/<size>/timing
  echo "$((SECONDS - stage_t0)) ${models}" > "${exp}/timing/stage$1"; stage_t0=${SECONDS}
}
sets="dev"; [ -z "${test_csv}" ] || sets+=" test"
csv_of() {
  case $1 in train) echo "${meld}/train_sent_emo.csv";; dev) echo "${meld}/dev_sent_emo.csv";;
             *) echo "${test_csv}";; esac
}
windows_of() { if [ "$1" = train ]; then echo "${train_windows}"; else echo "${eval_windows}"; fi; }
common="--context ${context} --no-progress"

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
  stage_log 1 "reading and checking the CSVs"
  for f in "${meld}/train_sent_emo.csv" "${meld}/dev_sent_emo.csv" ${test_csv}; do
    python -m speechlm.bin.paralin check --csv "${f}" --context "${context}"
  done
  took 1
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
  for s in train ${sets}; do
    if [ -n "${wav_scp}" ]; then
      stage_log 2 "${s}: real recordings from ${wav_scp//\{set\}/${s}}"
      mkdir -p "${data}/${s}"; cp "${wav_scp//\{set\}/${s}}" "${data}/${s}/wav.scp"
    else
      stage_log 2 "${s}: synthesizing the turns of the first $(windows_of "${s}") windows"
      python -m speechlm.bin.paralin synth --csv "$(csv_of "${s}")" --out "${data}/${s}" \
        --context "${context}" --max-windows "$(windows_of "${s}")" --threads 1
    fi
  done
  took 2
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
  for kind in ${speech_kinds}; do
    for s in train ${sets}; do
      stage_log 3 "${s}: ${kind} utterance embeddings"
      python -m speechlm.bin.paralin embed --csv "$(csv_of "${s}")" --kind "${kind}" \
        --wav-scp "${data}/${s}/wav.scp" --emb-cache "${emb_cache}" --context "${context}" \
        --max-windows "$(windows_of "${s}")" | tee "${data}/${s}/embed_${kind}.json"
    done
  done
  took 3
fi

options_of() {  # model name -> training options
  case $1 in
    full) echo "";;
    no_context) echo "--no-context";;
    no_context_sentiment) echo "--no-context-sentiment";;
    emotion) echo "--emotion";;
    response_only) echo "--task response";;
    smollm2_head) echo "--task heads";;
    speech_*) echo "--speech ${1#speech_} --wav-scp ${data}/train/wav.scp --emb-cache ${emb_cache}";;
    *) log "unknown model ${1}"; exit 1;;
  esac
}

train_model() {  # name
  local name=$1
  if [ -f "${exp}/${name}/paralin.json" ]; then log "${exp}/${name}: already trained"; return; fi
  if [ "${name}" = minilm_head ]; then  # sequence-classifier baseline: fit and score at once
    local evals=""; for s in ${sets}; do evals+=" ${s}=$(csv_of "${s}")"; done
    # shellcheck disable=SC2086
    python -m speechlm.bin.paralin baseline --csv "${meld}/train_sent_emo.csv" --eval ${evals} \
      --out "${exp}/${name}" --encoder minilm-l6 --context "${context}" \
      --max-windows "${train_windows}" --eval-max-windows "${eval_windows}"
    return
  fi
  if [ ! -f "${base_dir}/config.json" ]; then
    log "writing ${base} to ${base_dir} (float32 safetensors, loaded by every model)"
    python -m speechlm.bin.paralin export-base --base "${base}" --out "${base_dir}"
  fi
  # shellcheck disable=SC2046
  python -m speechlm.bin.paralin train --csv "${meld}/train_sent_emo.csv" --out "${exp}/${name}" \
    --base "${base_dir}" --max-windows "${train_windows}" --epochs "${epochs}" --threads 1 \
    --seed "${seed}" \
    ${common} --overwrite $(options_of "${name}")
}

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
  stage_log 4 "training the serialized multitask model (context ${context}, with sentiments)"
  case " ${models} " in *" full "*) train_model full;; esac
  took 4
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
  for name in ${models}; do
    [ "${name}" = full ] && continue
    stage_log 5 "ablation ${name}"
    train_model "${name}"
  done
  took 5
fi

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
  stage_log 6 "evaluating on ${sets}"
  for s in ${sets}; do
    todo=""  # every model not yet scored on this set, in one process (imports paid once)
    for name in ${models}; do
      [ -f "${exp}/${name}/${s}/scores.json" ] || todo+=" ${exp}/${name}"
    done
    [ -n "${todo}" ] || continue
    # shellcheck disable=SC2086
    python -m speechlm.bin.paralin eval --model ${todo} --csv "$(csv_of "${s}")" \
      --out "{model}/${s}" --max-windows "${eval_windows}" --wav-scp "${data}/${s}/wav.scp" \
      --emb-cache "${emb_cache}" --max-new-tokens "${max_new_tokens}" ${common}
  done
  took 6
fi

if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ]; then
  stage_log 7 "RESULTS.md"
  python local/make_results.py --exp "${exp}" --data "${data}" --sets ${sets} \
    --cmdline "${cmdline}" --out "${exp}/RESULTS.md"
  took 7
  cat "${exp}/RESULTS.md"
fi
log "Successfully finished. [elapsed=${SECONDS}s]"
