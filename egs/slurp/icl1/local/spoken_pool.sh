# local/spoken_pool.sh (sourced by local/lora_slu.sh and local/matched_shots.sh): a seeded
# sample of the few-shot pool, spoken and decoded like the test sets.
# spoken_pool DATA EXP MODEL PER_INTENT SEED [VOICE]: PER_INTENT sentences of each intent of
# DATA/local/slu_train.jsonl (never dev or test), spoken with noise and reverb as the test
# sets -> DATA/spoken_pool_PER_INTENT[_VOICE] (with utt2intent), decoded by MODEL (a catalogue
# Whisper model or pocketsphinx) -> EXP/MODEL/decode_spoken_pool_PER_INTENT[_VOICE]. Without
# VOICE, Piper joe and 40 sampled espeak-ng voices, one per sentence (so nearly all espeak-ng:
# the LoRA training speech); with VOICE (piper, espeak: local/voices.sh), that voice kind, as
# its test set. Reads ${nbest}, ${ps_nbest} (first_pass_opts) and ${nj} (decoding jobs,
# default 1). Finished steps are skipped.
spoken_pool() {
  local data=$1 exp=$2 model=$3 n=$4 seed=$5 voice=${6:-}
  local name=spoken_pool_${n}${voice:+_${voice}}
  local train=${data}/${name} dec=${exp}/${model}/decode_${name} lang="" opts
  # run.sh's ESPnet system was trained on the speech of every pool sentence, these included:
  # its decodes of them would be far cleaner than the test sets'
  [ "${model}" != espnet ] || { log "espnet: its system was trained on the pool's sentences"; return 1; }
  [ -f "${data}/local/slu_train.jsonl" ] || { log "${data}/local/slu_train.jsonl missing: run stage 1"; return 1; }
  if [ ! -f "${train}/.done" ]; then
    log "pool sentences (${n} per intent) spoken${voice:+ by ${voice}} -> ${train}"
    python local/pick_per_intent.py --jsonl "${data}/local/slu_train.jsonl" \
      --per_intent "${n}" --seed "${seed}" --out "${data}/local/spoken_pool_${n}"
    if [ -z "${voice}" ]; then
      opts="--voices piper:joe,espeak:sampled --num-voices 40 --voices-per-line 1 --seed $((200 + seed))"
    else
      opts="$(voice_opts "${voice}") --seed $(voice_seed $((300 + 2 * seed)) "${voice}")"
    fi
    # shellcheck disable=SC2086
    python -m speechlm.bin.synth_data_dir --text "${data}/local/spoken_pool_${n}.text" \
      --text-format kaldi ${opts} --augment --speaker-prefix "pool${voice}" --out "${train}"
  fi
  python ../slu1/local/attach_intents.py "${train}" "${data}/local/spoken_pool_${n}.jsonl"
  log "first pass of the pool's speech (${model}) -> ${dec}"
  if [ "${model}" = pocketsphinx ]; then
    # run.sh's trigram is built from the whole pool, so it has seen these sentences (the test
    # sentences it has not): they are decoded with a trigram of the pool without them, or
    # their WCNs would be far cleaner than the test sets'
    lang=${data}/lang_spoken_pool_${n}
    if [ ! -f "${lang}/lm.arpa" ]; then
      mkdir -p "${lang}"
      awk 'NR == FNR { drop[$1] = 1; next } !($1 in drop) { $1 = ""; print substr($0, 2) }' \
        "${data}/local/spoken_pool_${n}.text" "${data}/local/slu_train.text" \
        > "${lang}/lm_text.txt"
      [ -s "${lang}/lm_text.txt" ] || { log "pocketsphinx: ${n} per intent is every pool sentence: none left for its trigram"; return 1; }
      python ../slu1/local/make_lm.py --text "${lang}/lm_text.txt" --order 3 --out "${lang}/lm.arpa"
    fi
  fi
  local asr_opts
  asr_opts=$(first_pass_opts "${model}" "${lang}/lm.arpa")
  # shellcheck disable=SC2086
  python -m speechlm.bin.decode ${asr_opts} --lattice --data-dir "${train}" --out "${dec}" \
    --nj "${nj:-1}"
}
