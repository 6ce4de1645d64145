#!/usr/bin/env bash
# egs/slurp/retrieval1/run.sh: a speech-prefix LLM (Whisper encoder -> projector -> LLM) and
# kNN-LM retrieval with text keys and speech keys (arXiv 2406.09618), on synthetic SLURP speech.
#
#   ./run.sh                  # the RESULTS.md run (10000 training utterances, 500 store)
#   ./run.sh --quick true     # smaller sets, shorter training (integration path)
#
# Stages: 1 splits + synthetic speech, 2 embedded LM (the speech-prefix LLM's LLM),
# 3 Whisper encoder states + projector training, 4 Whisper 5-best (baseline, N-best for
# rescoring) and the ESPnet baseline (conformer CTC/attention trained on the same speech,
# ESPnet beam search), 5 datastores (text keys, speech keys), 6 decoding with/without kNN-LM
# and N-best rescoring (swept on dev), joint CTC decoding, cross-attention and in-context
# retrieval, 7 FAISS scaling bench, 8 RESULTS.md + plot.
#
# Test sets: `test` (espeak-ng voices like the training speech) and `test_piper`, the same
# sentences read by the Piper voice that no system trained on (an unseen-voice second set);
# every setting is tuned on `dev` (espeak-ng) only.
set -euo pipefail

stage=1; stop_stage=100
slurp=                          # default: $SPEECHLM_DATA/slurp, ../shared/data/slurp
quick=false
llm=exp/lm                      # the speech-prefix LLM's LLM: the embedded LM of stage 2, or
                                # smollm2-135m-instruct (about 10 s per batch of 8 here)
index=flat                      # datastore index: flat | ivf | ivfpq
train_size=                     # projector training utterances (default 10000; quick 2000)
test2_voice=piper:joe           # the second test set's voice (empty: no second set)
use_espnet=true                 # stage 4: the ESPnet baseline, trained on data/train
help_message="usage: $0 [--stage N] [--stop_stage N] [--quick true] [--llm NAME|DIR]"

cmdline="$0 $*"
. ./path.sh; . ./cmd.sh; . utils/parse_options.sh
. utils/log.sh
if [ -z "${slurp}" ]; then
  for d in "${SPEECHLM_DATA:+${SPEECHLM_DATA}/slurp}" ../../../../shared/data/slurp; do
    [ -n "${d}" ] && [ -d "${d}" ] && { slurp=${d}; break; }
  done
fi
[ -n "${slurp}" ] || { log "SLURP text not found: pass --slurp DIR or set SPEECHLM_DATA"; exit 1; }

if [ "${quick}" = true ]; then
  sizes="--train_size ${train_size:-2000} --store_size 200 --dev_size 20 --test_size 40"
  lm_opts="--steps 300 --layers 2 --hidden 128 --context-length 192"
  slm_opts="--epochs 3 --lr 3e-3 --train-llm --llm-lr 1e-3 --ctc-weight 1 --ctc-compress"
  sweep="--lams 0.25,0.5 --ks 8 --temps 1,10 --llm-scales 0,0.3,1"; bench_sizes=10000,100000
  xattn_opts="--train-limit 1000"
  asr_config=../slu1/conf/train_asr_quick.yaml; asr_epochs=1  # a smoke test of the stage
  exp=exp/quick; data=data/quick
else
  sizes="--train_size ${train_size:-10000} --store_size 500 --dev_size 40 --test_size 80"
  lm_opts="--epochs 3 --context-length 192"
  slm_opts="--epochs 5 --lr 3e-3 --train-llm --llm-lr 1e-3 --ctc-weight 1 --ctc-compress"
  sweep=""; bench_sizes=10000,100000,1000000; xattn_opts="--train-limit 3000"
  # SLURP's ESPnet conformer (egs/slurp/slu1), 4 epochs over 10000 utterances (~ the steps
  # of slu1's 12 over 3000)
  asr_config=../slu1/conf/train_asr.yaml; asr_epochs=4
  exp=exp; data=data
fi
[ "${llm}" = exp/lm ] && llm=${exp}/lm
test_sets=test; [ -n "${test2_voice}" ] && test_sets+=" test_piper"

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
  stage_log 1 "splits (train / store / dev / test) and synthetic speech"
  # shellcheck disable=SC2086
  python local/prepare.py --slurp "${slurp}" --out "${data}/local" ${sizes}
  seed=0
  for s in test dev store train; do
    seed=$((seed + 1))
    python -m speechlm.bin.synth_data_dir --text "${data}/local/${s}.text" --text-format kaldi \
      --num-voices 40 --voices-per-line 1 --seed "${seed}" --augment --speaker-prefix "${s}" \
      --out "${data}/${s}"
  done
  if [ -n "${test2_voice}" ]; then
    python -m speechlm.bin.synth_data_dir --text "${data}/local/test.text" --text-format kaldi \
      --voices "${test2_voice}" --seed 11 --augment --speaker-prefix testpiper \
      --out "${data}/test_piper"
  fi
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ] && [ "${llm}" = "${exp}/lm" ]; then
  # context 192: the speech prefix (25 embeddings per second) + prompt + transcript must fit
  stage_log 2 "embedded LM on SLURP's training text -> ${llm}"
  [ -f "${llm}/model.safetensors" ] || \
    python -m speechlm.bin.lm train --text "${data}/local/lm_text.txt" --out "${llm}" ${lm_opts} \
      --threads 1 --no-progress
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
  stage_log 3 "Whisper encoder states + projector -> ${exp}/speech_llm"
  [ -f "${exp}/speech_llm/projector.pt" ] || \
    python -m speechlm.bin.speech_llm train --data-dir "${data}/train" --out "${exp}/speech_llm" \
      --llm "${llm}" --feats-dir "${exp}/feats" ${slm_opts}
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
  stage_log 4 "Whisper tiny.en 5-best (baseline and N-best for rescoring); ESPnet baseline"
  for s in dev ${test_sets}; do
    python -m speechlm.bin.decode --backend whisper --nbest 5 --data-dir "${data}/${s}" \
      --out "${exp}/whisper/decode_${s}" --nj 1
  done
  if [ "${use_espnet}" = true ]; then
    asr_exp=${exp}/asr_espnet
    for s in train dev; do
      python -m speechlm.bin.compute_fbank --data-dir "${data}/${s}" --out-dir "${exp}/dump/${s}" \
        --config ../slu1/conf/fbank.yaml --nj 1 \
        $([ "${s}" = train ] && echo --cmvn-out "${exp}/dump/train/cmvn.npz")
    done
    python -m speechlm.bin.train_asr --train-data "${data}/train" --train-feats "${exp}/dump/train" \
      --valid-data "${data}/dev" --valid-feats "${exp}/dump/dev" --config "${asr_config}" \
      --fbank-config ../slu1/conf/fbank.yaml --exp "${asr_exp}" \
      --espnet-args "--max_epoch ${asr_epochs}"
    for s in dev ${test_sets}; do
      python -m speechlm.bin.decode --model-dir "${asr_exp}/model" --nbest 5 \
        --data-dir "${data}/${s}" --out "${asr_exp}/decode_${s}" --nj 1
    done
  fi
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
  stage_log 5 "datastores from data/store: text keys and speech keys (${index})"
  for keys in text speech; do
    [ -f "${exp}/store_${keys}/datastore.json" ] || \
      python -m speechlm.bin.retrieval build --data-dir "${data}/store" --keys "${keys}" \
        --model-dir "${exp}/speech_llm" --feats-dir "${exp}/feats" --index "${index}" \
        --out "${exp}/store_${keys}"
  done
fi

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
  stage_log 6 "speech-prefix LLM +- kNN-LM, Whisper N-best rescoring (swept on dev)"
  # shellcheck disable=SC2086
  python local/evaluate.py --model-dir "${exp}/speech_llm" --text-store "${exp}/store_text" \
    --speech-store "${exp}/store_speech" --whisper-dir "${exp}/whisper" \
    --feats-dir "${exp}/feats" --data "${data}" --out "${exp}/eval" ${sweep} \
    --test-sets "${test_sets// /,}" \
    $([ "${use_espnet}" = true ] && echo --espnet-dir "${exp}/asr_espnet")
  # retrieved utterances read through gated cross-attention or as an in-context prefix
  # (--oracle: the upper bound with each utterance's own transcript among the k)
  # shellcheck disable=SC2086
  python local/cross_attention.py --model-dir "${exp}/speech_llm" --feats-dir "${exp}/feats" \
    --data "${data}" --out "${exp}/xattn" --oracle --systems xattn,icl,icl_tuned \
    --test-sets "${test_sets// /,}" \
    --epochs 2 --lr 1e-2 ${xattn_opts} --no-progress
fi

if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ]; then
  stage_log 7 "FAISS scaling: random 576-dim keys (SmolLM2's width), ${bench_sizes}"
  python -m speechlm.bin.retrieval bench --sizes "${bench_sizes}" --dim 576 --queries 64 \
    --work-dir "${exp}/bench" --out "${exp}/bench.json"
fi

if [ ${stage} -le 8 ] && [ ${stop_stage} -ge 8 ]; then
  stage_log 8 "RESULTS.md + scaling plot"
  python local/make_results.py --exp "${exp}" --data "${data}" --cmdline "${cmdline}" \
    --out "$([ "${quick}" = true ] && echo "${exp}/RESULTS.md" || echo RESULTS.md)"
fi
