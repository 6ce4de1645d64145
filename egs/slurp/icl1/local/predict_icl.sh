# local/predict_icl.sh (sourced by run.sh): intent predictions of one set.
# Reads ${exp}, ${data}, ${slu_dir} and ${nj} of run.sh.
# predict_icl [--shots N] [--opt ARG]... [--out DIR] [--slu SLU_DIR] SEL MODEL SET VOICE
# INPUT...: intent predictions for one set from its first pass, read as each INPUT (wcn_cal, wcn_marg: the WCN
# of the dev-calibrated decode dir), into DIR/<input> (default ${exp}/MODEL/icl_SEL/SET_VOICE)
# by SLU_DIR (default ${slu_dir}) with N shots (default: the SLU dir's) chosen by SEL (-: the
# SLU dir's own prompt, e.g. a LoRA dir's, which has no shots); each --opt ARG is passed on to
# `slu predict` as it is (--opt --instruction --opt "": no instruction).
predict_icl() {
  local opts=() out="" slu=${slu_dir:-}
  while [ $# -gt 0 ]; do
    case $1 in
      --shots) opts+=(--shots "$2"); shift 2 ;;
      --opt) opts+=("$2"); shift 2 ;;
      --out) out=$2; shift 2 ;;
      --slu) slu=$2; shift 2 ;;
      *) break ;;
    esac
  done
  local sel=$1 m=$2 s=$3 v=$4; shift 4
  local kinds="" i
  [ "${sel}" = - ] || opts+=(--shot-selection "${sel}")
  [ -n "${out}" ] || out=${exp}/${m}/icl_${sel}/${s}_${v}
  for i in "$@"; do [ "${i}" = wcn_cal ] || [ "${i}" = wcn_marg ] || kinds+=" ${i}"; done
  # predict writes OUT/<input>/ for several inputs, OUT itself for one
  local dest=${out}; [ "$(wc -w <<< "${kinds}")" = 1 ] && dest=${out}/${kinds// /}
  # shellcheck disable=SC2086
  [ -z "${kinds// /}" ] || python -m speechlm.bin.slu predict --model-dir "${slu}" \
    --input ${kinds} "${opts[@]}" \
    --decode-dir "${exp}/${m}/decode_${s}_${v}" --data-dir "${data}/${s}_${v}" \
    --out "${dest}" --threads 1 --nj "${nj}" --no-progress
  for i in wcn_cal wcn_marg; do
    [[ " $* " == *" ${i} "* ]] || continue
    python -m speechlm.bin.slu predict --model-dir "${slu}" --input "${i%_cal}" \
      "${opts[@]}" --decode-dir "${exp}/${m}/decode_${s}_${v}_cal" \
      --data-dir "${data}/${s}_${v}" --out "${out}/${i}" --threads 1 \
      --nj "${nj}" --no-progress
  done
}
