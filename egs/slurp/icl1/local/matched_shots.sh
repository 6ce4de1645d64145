#!/usr/bin/env bash
# local/matched_shots.sh: shots shown in the query's own form ("matched" shots).
# The main run shows its shots as clean text while the query is a 1-best, N-best list or WCN:
# the LM never sees, in its examples, how recognition errors look. Here --per_intent sentences
# of each intent are drawn from the few-shot pool, spoken by each voice kind as its test set
# is (noise and reverb too) and decoded by the same first pass (local/spoken_pool.sh); each
# test set is classified twice with shots from its voice kind's spoken pool, chosen the same
# way (by their reference text): shown as text (`text_shots`) and shown as their own first
# pass's output in the query's form (`matched`: a 1-best query sees 1-best shots, a WCN query
# WCN shots). A pool of one voice kind shows the errors of that kind's speech: a Piper query
# (11% WER) shown shots at espeak-ng's 56% lost accuracy in a first try (see README).
# EXP/RESULTS_matched.md compares the two (paired, McNemar).
#
#   local/matched_shots.sh --data data/full --exp exp/full [--asr_model whisper-tiny.en] \
#     [--per_intent 200] [--inputs "1best nbest wcn oracle"] [--nj 2]
#
# Needs stages 1-4 of run.sh for the same --data/--exp and first pass. Every step skips
# finished work.
set -euo pipefail

data=; exp=
asr_model=whisper-tiny.en; nbest=5   # a catalogue Whisper model or pocketsphinx (run.sh's)
ps_nbest=10
per_intent=200                  # spoken pool sentences per intent (200: all of SLURP's pool)
sets="test"; voices="piper espeak"
inputs="1best nbest wcn oracle" # the query's forms; also nbest_marg / wcn_marg (their shots
                                # show the 1-best: each hypothesis is classified alone)
selection=embedding
seed=0
nj=1                            # decoding and slu predict worker processes
cmdline="$0 $*"
. ./path.sh; . utils/parse_options.sh
. utils/log.sh
. local/voices.sh
. local/first_pass.sh
. local/predict_icl.sh
. local/spoken_pool.sh
[ -n "${data}" ] && [ -n "${exp}" ] || { log "usage: $0 --data DIR --exp DIR [options]"; exit 1; }
for i in ${inputs}; do
  # the pool's speech is decoded once, uncalibrated: a calibrated query would see raw shots
  case ${i} in text|wcn_cal) log "--inputs: ${i} has no matched form here"; exit 1 ;; esac
done
slu_dir=${exp}/slu_icl
[ -f "${slu_dir}/slu.json" ] || { log "${slu_dir} missing: run stage 4 of run.sh"; exit 1; }

# shellcheck disable=SC2086
check_voices ${voices} || exit 1
for v in ${voices}; do
  spoken_pool "${data}" "${exp}" "${asr_model}" "${per_intent}" "${seed}" "${v}"
done
out=${exp}/${asr_model}/icl_matched/${selection}
mkdir -p "${out}"
echo "${cmdline}" > "${out}/command.txt"
for s in ${sets}; do
  for v in ${voices}; do
    pool=${data}/spoken_pool_${per_intent}_${v}
    dec=${exp}/${asr_model}/decode_spoken_pool_${per_intent}_${v}
    for shown in text same; do
      name=matched; [ "${shown}" = text ] && name=text_shots
      # shellcheck disable=SC2086
      predict_icl --opt --shot-data-dir --opt "${pool}" --opt --shot-decode-dir --opt "${dec}" \
        --opt --shot-input --opt "${shown}" --out "${out}/${name}/${s}_${v}" \
        "${selection}" "${asr_model}" "${s}" "${v}" ${inputs}
    done
  done
done
# shellcheck disable=SC2086
python local/matched_results.py --exp "${exp}" --data "${data}" --models "${asr_model}" \
  --sets ${sets} --voices ${voices} --inputs ${inputs} --selection "${selection}" \
  --cmdline "${cmdline}"
log "Successfully finished. [elapsed=${SECONDS}s]"
