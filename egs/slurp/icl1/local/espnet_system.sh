# local/espnet_system.sh (sourced by run.sh): the ESPnet first pass, slu1's system (conformer
# CTC/attention, ../slu1/conf/train_asr.yaml) trained on synthetic speech of the few-shot
# pool's sentences (never dev or test text), decoded through a CTC lattice over a TLG graph
# with the pool's trigram (the LM PocketSphinx uses), so its lattices are real search lattices.
#
# espnet_system DATA EXP VOICES: every pool sentence spoken once per voice kind (with noise and
# reverb, as the test sets) -> DATA/asr_train; features; training -> EXP/espnet/asr; the graph
# -> EXP/espnet/graph. With ${espnet_model} set (a model dir of `speechlm train-asr`, e.g. a
# user's own system) nothing is trained: only its graph is built. Every step skips finished
# work (train-asr resumes a killed training from its checkpoint).
espnet_train_config=../slu1/conf/train_asr.yaml
espnet_fbank_config=../slu1/conf/fbank.yaml
espnet_decode_config=../slu1/conf/decode_lattice.yaml

espnet_model_dir() {  # espnet_model_dir EXP: the model dir the first pass decodes with
  echo "${espnet_model:-$1/espnet/asr/model}"
}

espnet_system() {
  local data=$1 exp=$2 voices=$3 v seed parts=""
  local model; model=$(espnet_model_dir "${exp}")
  if [ -z "${espnet_model}" ] && [ ! -f "${model}/config.yaml" ]; then
    for v in ${voices}; do
      seed=$(voice_seed 300 "${v}"); parts+=" ${data}/asr_train_${v}"
      [ -f "${data}/asr_train_${v}/.done" ] && continue
      # shellcheck disable=SC2046
      python -m speechlm.bin.synth_data_dir --text "${data}/local/slu_train.text" \
        --text-format kaldi $(voice_opts "${v}") --seed "${seed}" --augment \
        --speaker-prefix "asrtrain${v}" --out "${data}/asr_train_${v}"
      touch "${data}/asr_train_${v}/.done"
    done
    if [ ! -f "${data}/asr_train/.done" ]; then
      rm -rf "${data}/asr_train"
      # shellcheck disable=SC2086
      python -m speechlm.bin.combine_data_dirs --dst "${data}/asr_train" ${parts}
      touch "${data}/asr_train/.done"
    fi
    # validation: the dev sentences of the first voice kind (dev only tunes, never reports)
    local valid=${data}/dev_${voices%% *}
    python -m speechlm.bin.compute_fbank --data-dir "${data}/asr_train" \
      --out-dir "${exp}/espnet/dump/asr_train" --config "${espnet_fbank_config}" \
      --cmvn-out "${exp}/espnet/dump/asr_train/cmvn.npz"
    python -m speechlm.bin.compute_fbank --data-dir "${valid}" \
      --out-dir "${exp}/espnet/dump/valid" --config "${espnet_fbank_config}"
    python -m speechlm.bin.train_asr --train-data "${data}/asr_train" \
      --train-feats "${exp}/espnet/dump/asr_train" --valid-data "${valid}" \
      --valid-feats "${exp}/espnet/dump/valid" --config "${espnet_train_config}" \
      --fbank-config "${espnet_fbank_config}" --decode-config "${espnet_decode_config}" \
      --exp "${exp}/espnet/asr"
  fi
  [ -f "${model}/config.yaml" ] || { log "--espnet_model ${model}: no config.yaml (a model dir of speechlm train-asr)"; return 1; }
  python -m speechlm.bin.make_graph --model-dir "${model}" --text "${data}/lang/lm_text.txt" \
    --plain-text --arpa "${data}/lang/lm.arpa" --out "${exp}/espnet/graph"
}
