# local/predict_icl.sh (sourced by run.sh): intent predictions of one set.
# Reads ${exp}, ${data} and ${slu_dir} of run.sh.
# predict_icl SEL MODEL SET VOICE INPUT...: intent predictions for one set from its first
# pass, read as each INPUT (wcn_cal, wcn_marg: the WCN of the dev-calibrated decode dir)
predict_icl() {
  local sel=$1 m=$2 s=$3 v=$4; shift 4
  local kinds="" i out=${exp}/${m}/icl_${sel}/${s}_${v}
  for i in "$@"; do [ "${i}" = wcn_cal ] || [ "${i}" = wcn_marg ] || kinds+=" ${i}"; done
  # predict writes OUT/<input>/ for several inputs, OUT itself for one
  local dest=${out}; [ "$(wc -w <<< "${kinds}")" = 1 ] && dest=${out}/${kinds// /}
  # shellcheck disable=SC2086
  [ -z "${kinds// /}" ] || python -m speechlm.bin.slu predict --model-dir "${slu_dir}" \
    --input ${kinds} --shot-selection "${sel}" --decode-dir "${exp}/${m}/decode_${s}_${v}" \
    --data-dir "${data}/${s}_${v}" --out "${dest}" --threads 1 --nj "${nj}" \
    --no-progress
  for i in wcn_cal wcn_marg; do
    [[ " $* " == *" ${i} "* ]] || continue
    python -m speechlm.bin.slu predict --model-dir "${slu_dir}" --input "${i%_cal}" \
      --shot-selection "${sel}" --decode-dir "${exp}/${m}/decode_${s}_${v}_cal" \
      --data-dir "${data}/${s}_${v}" --out "${out}/${i}" --threads 1 \
      --nj "${nj}" --no-progress
  done
}
