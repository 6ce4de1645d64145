#!/usr/bin/env bash
# egs/slurp/slu1/run.sh: speech -> lattices/WCN -> LLM rescoring and intent classification.
#
#   ./run.sh                          # everything (see RESULTS.md for the wall time)
#   ./run.sh --quick true             # small sets and models (integration test, < 15 min)
#   ./run.sh --stage 3 --test_jsonl "/path/to/test.jsonl"   # any SLURP-form jsonl as a test set
#
# The speech is SYNTHETIC (espeak-ng voices with noise and reverberation): SLURP's audio is
# not available here. Stages: 1 text splits + synthetic speech, 2 LMs (word trigram for the
# first passes, embedded LLM), 3 PocketSphinx first pass with lattices, 4 ESPnet system
# (train on synthetic speech of the LM text, lattice decoding), 5 LLM N-best rescoring (swept
# on dev, applied to test; or --rescore_method M: a second-pass method of
# speechlm.llm.second_pass), 6 intent classification from text/1-best/N-best/WCN/oracle,
# 7 RESULTS.md.
set -euo pipefail

stage=1; stop_stage=100; nj=2
slurp=; snips=                  # default: $SPEECHLM_DATA/{slurp,snips}, ../shared/data/...
test_jsonl=                     # extra SLURP-form test sets (never trained on)
quick=false
use_espnet=true                 # stage 4: the second first-pass system
ps_lw=                          # PocketSphinx LM weight (default 6.5)
slu_modes="lora icl"
# LoRA classifier input options, chosen on dev: WCN words without posteriors (threshold 0.2)
# beat WCN with posteriors (dev 25.3 vs 22.0 intent accuracy, PocketSphinx WCNs)
lora_opts="--no-wcn-posteriors --wcn-noise 0.5 --wcn-threshold 0.2"
# in-context mode: contextual calibration (without it the embedded LM answers the short label
# "set" to almost every query: 0% on dev text, 2.7% with it)
icl_opts="--calibrate"
slu_inputs="text onebest nbest wcn oracle"
llm_scales="0 0.05 0.1 0.2 0.3 0.5 0.7 1.0 1.5 2.0 3.0"
length_bonuses="0 0.5 1 2 3"
llm=exp/llm                     # stage 5's LLM: the embedded LM of stage 2, or a catalogue
                                # LLM (smollm2-135m-instruct) or any local checkpoint dir
llm_url=                        # an OpenAI-compatible server (vLLM...) for the rescoring LLM of
llm_model=                      # stage 5, e.g. http://gpu:8000/v1; default: the embedded exp/llm
rescore_method=sweep            # stage 5: sweep (llm_scale x length bonus, the default) or a
                                # second-pass method: lm lm_norm prompt tap ger-select ger-free
                                # mwer pll (speechlm rescore --method; weight tuned on dev)
rescore_model=                  # mwer/pll: the scorer dir (speechlm rescore train --method ...)
help_message="usage: $0 [--stage N] [--stop_stage N] [--nj N] [--quick true] [--test_jsonl 'a.jsonl ...'] [--rescore_method sweep|lm|lm_norm|prompt|tap|ger-select|ger-free|mwer|pll [--rescore_model DIR]]"

cmdline="$0 $*"                 # for RESULTS.md
. ./path.sh; . ./cmd.sh; . utils/parse_options.sh

. utils/log.sh  # log, stage_log (stage times in the log)
# ../shared/data beside the checkout is a development convenience; SPEECHLM_DATA is the rule
for name in slurp snips; do
  if [ -z "${!name}" ]; then
    for d in "${SPEECHLM_DATA:+${SPEECHLM_DATA}/${name}}" ../../../../shared/data/${name}; do
      [ -n "${d}" ] && [ -d "${d}" ] && { printf -v "${name}" '%s' "${d}"; break; }
    done
  fi
  if [ -n "${!name}" ]; then log "${name}: using $(cd "${!name}" && pwd)"; fi
done
[ -n "${slurp}" ] || { log "SLURP text not found: pass --slurp DIR or set SPEECHLM_DATA"; exit 1; }

if [ "${quick}" = true ]; then
  sizes="--dev_size 40 --test_size 60 --snips_eval_size 20 --asr_train_lines 300 --snips_train_size 300"
  slu_opts="--epochs 1"
  lm_opts="--epochs 1 --steps 150 --layers 2 --hidden 128"; asr_config=conf/train_asr_quick.yaml
  llm_scales="0 0.2 0.5"; length_bonuses="0 1"
  # an undertrained model has flat posteriors: narrow beams keep its lattices small
  lattice_opts="--search-beam 10 --lattice-beam 4"
else
  sizes="--dev_size 300 --test_size 400 --snips_eval_size 150 --asr_train_lines 3000"
  lm_opts=""; asr_config=conf/train_asr.yaml; lattice_opts=""; slu_opts=""
fi
asr_exp=exp/asr_$(basename "${asr_config}" .yaml)
eval_sets="dev test"
for t in ${test_jsonl}; do eval_sets+=" test_$(basename "${t}" .jsonl | tr -c 'A-Za-z0-9_\n' _)"; done
[ -n "${snips}" ] && eval_sets+=" snips_dev snips_test"

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
  stage_log 1 "SLU splits (by sentence) and synthetic speech -> data/{${eval_sets// /,}}"
  # shellcheck disable=SC2086
  python local/prepare_slu.py --slurp "${slurp}" ${snips:+--snips "${snips}"} --out data/local \
    ${sizes} ${test_jsonl:+--test_jsonl ${test_jsonl}}
  seed=0
  for s in ${eval_sets}; do
    seed=$((seed + 1))
    python -m speechlm.bin.synth_data_dir --text "data/local/${s}.text" --text-format kaldi \
      --num-voices 40 --voices-per-line 1 --seed "${seed}" --augment --speaker-prefix "${s//_/}" \
      --out "data/${s}"
    python local/attach_intents.py "data/${s}" "data/local/${s}.jsonl"
    python -m speechlm.bin.validate_data_dir "data/${s}"
  done
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
  stage_log 2 "word trigram (first passes) and the embedded LLM, from data/local/lm_text.txt"
  mkdir -p data/lang
  [ -f data/lang/lm.arpa ] && [ data/lang/lm.arpa -nt data/local/lm_text.txt ] || \
    python local/make_lm.py --text data/local/lm_text.txt --order 3 --out data/lang/lm.arpa
  # A finished LM for the same text and options is kept; otherwise it is trained (again).
  if ! python -c "import json,sys,hashlib; r=json.load(open('exp/llm/train_report.json')); \
sys.exit(r['text_sha256'] != hashlib.sha256(open('data/local/lm_text.txt','rb').read()).hexdigest() \
or open('exp/llm/.opts').read() != sys.argv[1])" "${lm_opts}" 2>/dev/null; then
    # shellcheck disable=SC2086
    python -m speechlm.bin.lm train --text data/local/lm_text.txt --out exp/llm ${lm_opts} --overwrite
    echo -n "${lm_opts}" > exp/llm/.opts
  fi
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
  stage_log 3 "PocketSphinx (en-us acoustic model, in-domain trigram) with lattices"
  for s in ${eval_sets}; do
    python -m speechlm.bin.decode --cmd "${decode_cmd}" \
      --backend pocketsphinx --lattice --ps-lm data/lang/lm.arpa \
      ${ps_lw:+--ps-lw ${ps_lw}} --nbest 10 --data-dir "data/${s}" --out "exp/pocketsphinx/decode_${s}" \
      --nj "${nj}"
  done
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ] && [ "${use_espnet}" = true ]; then
  stage_log 4 "ESPnet system on synthetic speech of the LM text -> ${asr_exp}"
  python -m speechlm.bin.synth_data_dir --text data/local/asr_train.text --text-format kaldi \
    --num-voices 40 --voices-per-line 1 --seed 100 --augment --speaker-prefix asrtrain \
    --out data/asr_train
  for s in asr_train dev; do
    python -m speechlm.bin.compute_fbank --cmd "${train_cmd}" --data-dir "data/${s}" --out-dir "dump/${s}" \
      --config conf/fbank.yaml --nj "${nj}" $([ "${s}" = asr_train ] && echo --cmvn-out dump/asr_train/cmvn.npz)
  done
  python -m speechlm.bin.train_asr --train-data data/asr_train --train-feats dump/asr_train \
    --valid-data data/dev --valid-feats dump/dev --config "${asr_config}" \
    --fbank-config conf/fbank.yaml --exp "${asr_exp}"
  python -m speechlm.bin.make_graph --model-dir "${asr_exp}/model" --text data/local/lm_text.txt \
    --plain-text --arpa data/lang/lm.arpa --out "${asr_exp}/graph"
  for s in ${eval_sets}; do
    python -m speechlm.bin.decode --cmd "${decode_cmd}" \
      --model-dir "${asr_exp}/model" --graph "${asr_exp}/graph" \
      --lattice --config conf/decode_lattice.yaml ${lattice_opts} --data-dir "data/${s}" \
      --out "${asr_exp}/decode_${s}" --nj "${nj}"
  done
fi

systems=exp/pocketsphinx
[ "${use_espnet}" = true ] && systems+=" ${asr_exp}"

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ] && [ "${rescore_method}" != sweep ]; then
  stage_log 5 "second pass --method ${rescore_method} (weight tuned on dev, applied to the test sets)"
  llm_opts="--llm ${llm}"
  [ -z "${llm_url}" ] || llm_opts="--llm-url ${llm_url} ${llm_model:+--llm-model ${llm_model}}"
  case ${rescore_method} in mwer|pll) llm_opts="--model ${rescore_model:?--rescore_method ${rescore_method} needs --rescore_model DIR}" ;; esac
  for sys in ${systems}; do
    out=${sys}/rescore_${rescore_method}; mkdir -p ${out}
    cat $(for s in ${eval_sets}; do echo data/${s}/text; done) > ${out}/ref.txt  # utt ids differ by set
    # shellcheck disable=SC2046,SC2086
    python -m speechlm.bin.rescore --method ${rescore_method} ${llm_opts} --dev ${sys}/decode_dev \
      --nbest $(for s in ${eval_sets}; do [ "${s}" = dev ] || echo ${sys}/decode_${s}; done) \
      --ref ${out}/ref.txt --out ${out}
    # stage 7 reads decode_<set>/rescore_llm/{best.json,text}: the method's tuned output
    python local/link_second_pass.py ${out} ${sys} ${eval_sets}
  done
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ] && [ "${rescore_method}" = sweep ]; then
  stage_log 5 "LLM N-best rescoring (sweep on dev, best setting applied to the test sets)"
  llm_opts="--llm ${llm}"
  [ -z "${llm_url}" ] || llm_opts="--llm-url ${llm_url} ${llm_model:+--llm-model ${llm_model}}"
  for sys in ${systems}; do
    python -m speechlm.bin.rescore --decode-dir "${sys}/decode_dev" ${llm_opts} \
      --out "${sys}/decode_dev/rescore_llm" --llm-scales "${llm_scales}" \
      --length-bonuses "${length_bonuses}" --ref data/dev/text
    best=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['setting'])" \
      "${sys}/decode_dev/rescore_llm/best.json")
    scale=$(echo "${best}" | sed -E 's/llm_scale_([^_]+)_bonus_.*/\1/')
    bonus=$(echo "${best}" | sed -E 's/.*_bonus_(.+)/\1/')
    for s in ${eval_sets}; do
      [ "${s}" = dev ] && continue
      python -m speechlm.bin.rescore --decode-dir "${sys}/decode_${s}" ${llm_opts} \
        --out "${sys}/decode_${s}/rescore_llm" --llm-scales "${scale}" --length-bonuses "${bonus}" \
        --ref "data/${s}/text"
    done
  done
fi

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
  stage_log 6 "intent classification (${slu_modes}) from ${slu_inputs}"
  for mode in ${slu_modes}; do
    for corpus in slurp snips; do
      train=data/local/slu_train.jsonl; sets="dev test"
      for t in ${test_jsonl}; do sets+=" test_$(basename "${t}" .jsonl | tr -c 'A-Za-z0-9_\n' _)"; done
      if [ "${corpus}" = snips ]; then
        [ -n "${snips}" ] || continue
        train=data/local/snips_train.jsonl; sets="snips_dev snips_test"
      fi
      slu_dir=exp/slu_${corpus}_${mode}
      # shellcheck disable=SC2086
      opts="${icl_opts}"; [ "${mode}" = lora ] && opts="${lora_opts} ${slu_opts}"
      stamp="$(cat "${train}" exp/llm/train_report.json | md5sum | cut -c1-32) ${opts}"
      if [ ! -f "${slu_dir}/.done" ] || [ "$(cat "${slu_dir}/.done")" != "${stamp}" ]; then
        python -m speechlm.bin.slu train --llm exp/llm --train-jsonl "${train}" \
          --dev-jsonl "data/local/${sets%% *}.jsonl" --out "${slu_dir}" --mode "${mode}" \
          --overwrite ${opts}
        echo "${stamp}" > "${slu_dir}/.done"
      fi
      for sys in ${systems}; do
        for s in ${sets}; do
          for input in ${slu_inputs}; do
            python -m speechlm.bin.slu predict --model-dir "${slu_dir}" --input "${input}" \
              --decode-dir "${sys}/decode_${s}" --data-dir "data/${s}" \
              --out "${slu_dir}/predict_$(basename "${sys}")_${s}_${input}"
          done
        done
      done
    done
  done
fi

if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ]; then
  stage_log 7 "RESULTS.md"
  python local/make_results.py --systems ${systems} --sets ${eval_sets} --elapsed "${SECONDS}" \
    --quick "${quick}" --command "${cmdline}"
  cat RESULTS.md
fi
log "Successfully finished. [elapsed=${SECONDS}s]"
