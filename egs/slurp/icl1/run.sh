#!/usr/bin/env bash
# egs/slurp/icl1/run.sh: in-context SLU over word confusion networks with SmolLM2-135M-Instruct
# (arXiv 2401.02921 on SLURP): Whisper first passes on synthetic speech -> text / 1-best /
# N-best / WCN / oracle -> few-shot rank classification over SLURP's intents.
#
#   ./run.sh --quick true            # small sets (< 15 min on 2 CPU cores)
#   ./run.sh                         # the sizes of exp/full/RESULTS.md
#   ./run.sh --test_jsonl "/path/to/test.jsonl"   # also a SLURP-form set never used here
#   ./run.sh --corpus snips [--quick true]       # SNIPS: exp/snips_{quick,full}
#   ./run.sh --corpus snips --snips_test_dir DIR # SNIPS test = DIR/validate_*.json: exp/snips_*_testdir
#   ./run.sh --corpus snips --noise_levels "20 10 5 0"  # + accuracy vs WER: RESULTS_noise.md
#   ./run.sh --asr_models "whisper-tiny.en pocketsphinx"  # + PocketSphinx's real lattices
#   ./run.sh --asr_models "whisper-tiny.en espnet"  # + an ESPnet system trained here (its lattices)
#   ./run.sh --asr_models espnet --espnet_model DIR  # a model dir of `speechlm train-asr`: not trained
#   ./run.sh --wcn_sweep "0.05 0.2 0.4"  # + WCN threshold / no posteriors: RESULTS_wcn.md
#   ./run.sh --prompt_sweep "no_instruction no_verbalize calibrate"  # + RESULTS_prompt.md
#   ./run.sh --tune_marginal wcn_marg    # + wcn_marg's k and weight scale from dev: RESULTS_marginal.md
#   ./run.sh --knn 0                     # without the kNN baseline (stage 5: RESULTS_knn.md)
#   ./run.sh --knn_choices "4 16"        # + the kNN's number of neighbours chosen on dev
#
# Stages: 1 SLU splits (../slu1/local/prepare_slu.py) and synthetic speech, one data dir per
# voice kind (Piper joe; sampled espeak-ng voices), noise and reverb added; 2 first passes:
# Whisper (N-best -> lattice -> WCN, oracle), PocketSphinx (its lattice with a word trigram
# of the few-shot pool's sentences, data/<size>/lang/lm.arpa -> WCN, oracle) and/or ESPnet
# (slu1's conformer CTC/attention trained on the pool's sentences spoken by every voice kind,
# CTC lattice over a TLG graph with the same trigram: local/espnet_system.sh); 3 acoustic scale of the WCN posteriors tuned on
# dev by NCE, calibrated WCNs of every set; 4 SLU dirs (the few-shot pool per selection);
# 5 intent classification per first pass x set x input; 6 spoken QA (questions built from
# SLURP's slot annotations, EM/F1 per input; --qa false skips it); 7 RESULTS.md and the plot.
# --corpus snips: the few-shot pool is SNIPS's train_<Intent>_full.json, dev and test drawn
# per intent from its other sentences (or test = --snips_test_dir's validate_<Intent>.json);
# the QA questions come from SNIPS's entity chunks. The same stages otherwise.
# --noise_levels "L1 L2 ...": the test sentences are also spoken at each fixed SNR (dB), by the
# same voices with the same reverb and noise waveform as test_<voice> (only the level differs),
# as sets test_snr<L>_<voice> (L<0 written m5 for -5); stages 2, 3 and 5 treat them as test
# sets (${noise_inputs} only), and stage 5 writes RESULTS_noise.md and RESULTS_noise.png:
# intent accuracy vs first-pass WER, one curve per input.
# The speech is SYNTHETIC: SLURP's and SNIPS's audio are not available here.
set -euo pipefail

stage=1; stop_stage=100
nj=1                            # parallel jobs: decoding, and slu predict's worker processes
corpus=slurp                    # slurp | snips
slurp=                          # default: $SPEECHLM_DATA/slurp, ../shared/data/slurp
snips=                          # --corpus snips: default $SPEECHLM_DATA/snips, ../shared/data/snips
snips_test_dir=                 # --corpus snips: validate_<Intent>.json files = the test set
snips_pool_per_intent=300       # --corpus snips: few-shot pool sentences per intent (0 = all)
snips_test_per_intent=          # --corpus snips: test sentences per intent (default 10, quick 2;
                                # 0 = every row of --snips_test_dir)
test_jsonl=                     # extra SLURP-form test sets (never used for any choice)
test_jsonl_size=                # sentences kept of each (seeded sample; default the recipe's
                                # test size, 100 / --quick 20; 0 = every line: SLURP's test
                                # split is ~3,000 sentences, days on 2 CPU cores)
quick=false
asr_models="whisper-tiny.en"    # first passes: catalogue Whisper models (whisper-base works
                                # too), pocketsphinx (en-us model, in-domain trigram) and/or
                                # espnet (trained in stage 2 on the pool's synthetic speech)
espnet_model=                   # espnet: a model dir of `speechlm train-asr` to decode with
                                # instead of training one (stage 2 builds only its graph)
voices="piper espeak"           # voice kinds: piper = piper:joe, espeak = sampled espeak-ng
nbest=5                         # Whisper beam = N-best size
ps_nbest=10                     # PocketSphinx: N-best paths of its lattice
ps_scales="0.03 0.05 0.07 0.085 0.1 0.12 0.15 0.2 0.3 0.5"  # PocketSphinx: acoustic scales
                                # tried in stage 3 (Kaldi-style 1/LMWT; decoder's: 1/9.5)
llm=smollm2-135m-instruct       # a catalogue LLM or a local checkpoint dir
shots=8
selections="embedding"          # shot selection(s): embedding (MiniLM), random, similar (TF-IDF);
                                # two or more: compared in exp/.../RESULTS_selection.md + plot
inputs=                         # default "text 1best nbest nbest_marg wcn wcn_cal wcn_marg
                                # oracle" (--quick too); wcn_cal: WCN at the dev-tuned acoustic
                                # scale; nbest_marg / wcn_marg: each of 4 N-best hypotheses /
                                # calibrated-WCN paths classified alone, label posteriors
                                # averaged with the hypotheses' posteriors
knn=8                           # the baseline the LM has to beat: no LM, the N pool sentences
knn_inputs="text 1best nbest_marg wcn_marg oracle"  # nearest each input (MiniLM) vote (0: off)
                                # -> exp/.../RESULTS_knn.md + plot, beside the main run
knn_choices=                    # e.g. "4 16": kNN also at these counts, on dev and test; the
                                # count best on dev is reported too (RESULTS_knn.md)
shots_sweep=                    # e.g. "0 1 2 4": stage 5 also classifies ${sweep_inputs} with
sweep_inputs="1best wcn oracle" # each shot count -> exp/.../RESULTS_shots.md + plot
wcn_threshold=0.1
wcn_sweep=                      # e.g. "0.05 0.2 0.4": stage 5 also classifies the WCN pruned at
                                # each threshold and once without posteriors -> RESULTS_wcn.md
prompt_sweep=                   # e.g. "no_instruction no_verbalize calibrate": stage 5 also
prompt_inputs="1best wcn oracle" # classifies these inputs with the main prompt changed in
                                # that one way (no instruction line; labels scored as written;
                                # contextual calibration) -> RESULTS_prompt.md + plot
tune_marginal=                  # e.g. "wcn_marg": stage 5 also picks k and the weight scale of
                                # each of these inputs on the dev sets (every voice pooled;
marginal_ks="1 2 4 8"           # this grid) and classifies the test sets with that choice
marginal_scales="0 0.25 0.5 1"  # (<input>_tuned) -> RESULTS_marginal.md + plot; with
                                # --noise_levels, the noise sets too (RESULTS_noise.md)
noise_levels=                   # e.g. "20 10 5 0": test sets at each fixed SNR (dB) -> exp/.../
noise_inputs="1best wcn wcn_cal oracle"  # RESULTS_noise.md + plot (accuracy vs WER per input)
qa=true                         # stage 6: spoken QA from slot annotations
qa_inputs=                      # default "text 1best nbest nbest_marg wcn wcn_marg oracle"
                                # (--quick: without the two _marg; wcn_marg: calibrated WCN)
qa_noise_inputs="1best wcn_marg oracle"  # with --noise_levels: stage 6 asks the noise sets too
qa_shots=4
qa_sweep=                       # e.g. "0.05 0.2 0.4": QA from WCNs pruned at each threshold,
                                # and once without posteriors (RESULTS_qa.md table + plot)
stage_times=                   # a log of earlier runs (their "Stage N took" lines) for RESULTS.md
notes=                          # a markdown file appended to RESULTS.md (how it was run)
help_message="usage: $0 [--stage N] [--stop_stage N] [--quick true] [--test_jsonl 'a.jsonl ...']
       $0 --corpus snips [--quick true] [--snips_test_dir DIR]"

cmdline="$0 $*"
. ./path.sh; . ./cmd.sh; . utils/parse_options.sh
. utils/log.sh
. local/voices.sh
. local/first_pass.sh
. local/espnet_system.sh
. local/predict_icl.sh

case ${corpus} in
  slurp)
    if [ -z "${slurp}" ]; then
      for d in "${SPEECHLM_DATA:+${SPEECHLM_DATA}/slurp}" ../../../../shared/data/slurp; do
        [ -n "${d}" ] && [ -f "${d}/devel.jsonl" ] && { slurp=${d}; break; }
      done
    fi
    [ -n "${slurp}" ] || { log "SLURP text not found: pass --slurp DIR or set SPEECHLM_DATA"; exit 1; }
    log "slurp: using $(cd "${slurp}" && pwd)"
    if [ "${quick}" = true ]; then dev_size=16; test_size=20; exp=exp/quick
    else dev_size=40; test_size=100; exp=exp/full; fi
    test_jsonl_size=${test_jsonl_size:-${test_size}} ;;
  snips)
    if [ -z "${snips}" ]; then
      for d in "${SPEECHLM_DATA:+${SPEECHLM_DATA}/snips}" ../../../../shared/data/snips; do
        [ -n "${d}" ] && compgen -G "${d}/train_*_full.json" >/dev/null && { snips=${d}; break; }
      done
    fi
    [ -n "${snips}" ] || { log "SNIPS not found: pass --snips DIR or set SPEECHLM_DATA"; exit 1; }
    [ -z "${test_jsonl}" ] || { log "--test_jsonl is SLURP's; SNIPS takes --snips_test_dir"; exit 1; }
    if [ -n "${snips_test_dir}" ] && ! compgen -G "${snips_test_dir}/validate_*.json" >/dev/null; then
      log "--snips_test_dir ${snips_test_dir}: no validate_*.json file"; exit 1
    fi
    log "snips: using $(cd "${snips}" && pwd)${snips_test_dir:+, test set $(cd "${snips_test_dir}" && pwd)}"
    # sentences per intent (7 intents)
    if [ "${quick}" = true ]; then dev_size=2; test_size=2; exp=exp/snips_quick
    else dev_size=4; test_size=10; exp=exp/snips_full; fi
    [ -z "${snips_test_per_intent}" ] || test_size=${snips_test_per_intent}
    if [ "${test_size}" = 0 ] && [ -z "${snips_test_dir}" ]; then
      log "--snips_test_per_intent 0 (all) needs --snips_test_dir"; exit 1
    fi
    [ -z "${snips_test_dir}" ] || exp=${exp}_testdir ;;
  *) log "--corpus ${corpus}: slurp or snips"; exit 1 ;;
esac
data=data/${exp#exp/}
if [ -z "${qa_inputs}" ]; then
  qa_inputs="text 1best nbest nbest_marg wcn wcn_marg oracle"
  [ "${quick}" = true ] && qa_inputs="text 1best nbest wcn oracle"
fi
# --quick too: the marginalized inputs are the best method (4 rankings an utterance each)
[ -n "${inputs}" ] || inputs="text 1best nbest nbest_marg wcn wcn_cal wcn_marg oracle"
sets="dev test"
for t in ${test_jsonl}; do sets+=" test_$(basename "${t}" .jsonl | tr -c 'A-Za-z0-9_\n' _)"; done
noise_sets=""   # test_snr<L>: the test sentences at each --noise_levels SNR
for l in ${noise_levels}; do
  [[ ${l} =~ ^-?[0-9]+([.][0-9]+)?$ ]] || { log "--noise_levels: '${l}' is not an SNR in dB"; exit 1; }
  noise_sets+=" test_snr$(echo "${l}" | tr -- '-.' 'mp')"
done
noise_sets=${noise_sets# }
for i in ${prompt_sweep}; do
  case ${i} in no_instruction|no_verbalize|calibrate) ;;
    *) log "--prompt_sweep: '${i}' is not no_instruction, no_verbalize or calibrate"; exit 1 ;;
  esac
done
for i in ${tune_marginal}; do
  case ${i} in nbest_marg|wcn_marg) ;; *) log "--tune_marginal: '${i}' is not nbest_marg or wcn_marg"; exit 1 ;; esac
done
# shellcheck disable=SC2086
check_voices ${voices} || exit 1

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
  stage_log 1 "SLU splits and synthetic speech -> ${data}/<set>_<voice>"
  if [ "${corpus}" = snips ]; then
    python ../slu1/local/prepare_slu.py --corpus snips --snips "${snips}" --out "${data}/local" \
      --dev_per_intent "${dev_size}" --test_per_intent "${test_size}" \
      --pool_per_intent "${snips_pool_per_intent}" ${snips_test_dir:+--snips_test_dir "${snips_test_dir}"}
  else
    # shellcheck disable=SC2086
    python ../slu1/local/prepare_slu.py --slurp "${slurp}" --out "${data}/local" \
      --dev_size "${dev_size}" --test_size "${test_size}" --asr_train_lines 0 \
      ${test_jsonl:+--test_jsonl ${test_jsonl} --test_jsonl_size "${test_jsonl_size}"}
  fi
  set_i=0
  for s in ${sets}; do
    for v in ${voices}; do
      seed=$(voice_seed $((2 * set_i)) "${v}")  # dev_piper 1, dev_espeak 2, test_piper 3, ...
      # shellcheck disable=SC2046
      python -m speechlm.bin.synth_data_dir --text "${data}/local/${s}.text" --text-format kaldi \
        $(voice_opts "${v}") --seed "${seed}" --augment --speaker-prefix "${s//_/}${v}" \
        --out "${data}/${s}_${v}"
      python ../slu1/local/attach_intents.py "${data}/${s}_${v}" "${data}/local/${s}.jsonl"
      [ "${s}" = test ] && eval "test_seed_${v}=${seed}"
    done
    set_i=$((set_i + 1))
  done
  for l in ${noise_levels}; do
    ns=test_snr$(echo "${l}" | tr -- '-.' 'mp')
    for v in ${voices}; do
      # test_<voice>'s seed: the same voice, reverb and noise waveform per sentence, at SNR l
      tseed=test_seed_${v}
      # shellcheck disable=SC2046
      python -m speechlm.bin.synth_data_dir --text "${data}/local/test.text" --text-format kaldi \
        $(voice_opts "${v}") --seed "${!tseed}" --augment --snr-db="${l}" \
        --speaker-prefix "test${v}" --out "${data}/${ns}_${v}"
      python ../slu1/local/attach_intents.py "${data}/${ns}_${v}" "${data}/local/test.jsonl"
    done
  done
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
  stage_log 2 "first passes (${asr_models}): N-best / lattice -> WCN, oracle"
  for m in ${asr_models}; do
    if [ "${m}" = pocketsphinx ] || [ "${m}" = espnet ]; then
      # in-domain word trigram from the few-shot pool's sentences (never dev or test text)
      mkdir -p "${data}/lang"
      if [ ! -f "${data}/lang/lm.arpa" ] || [ "${data}/local/slu_train.text" -nt "${data}/lang/lm.arpa" ]; then
        cut -d' ' -f2- "${data}/local/slu_train.text" > "${data}/lang/lm_text.txt"
        python ../slu1/local/make_lm.py --text "${data}/lang/lm_text.txt" --order 3 \
          --out "${data}/lang/lm.arpa"
      fi
    fi
    if [ "${m}" = espnet ]; then espnet_system "${data}" "${exp}" "${voices}"; fi
    asr_opts=$(first_pass_opts "${m}" "${data}/lang/lm.arpa" "${exp}")
    for s in ${sets} ${noise_sets}; do
      for v in ${voices}; do
        # shellcheck disable=SC2086
        python -m speechlm.bin.decode ${asr_opts} --lattice --data-dir "${data}/${s}_${v}" \
          --out "${exp}/${m}/decode_${s}_${v}" --nj "${nj}"
      done
    done
  done
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
  stage_log 3 "WCN acoustic scale tuned on dev by NCE; calibrated WCNs -> decode_<set>_<voice>_cal"
  for m in ${asr_models}; do
    dev_opts=""; apply_opts=""
    for v in ${voices}; do
      dev_opts+=" --dev ${exp}/${m}/decode_dev_${v} ${data}/dev_${v}"
      for s in ${sets} ${noise_sets}; do
        apply_opts+=" --apply ${exp}/${m}/decode_${s}_${v} ${data}/${s}_${v} ${exp}/${m}/decode_${s}_${v}_cal"
      done
    done
    # PocketSphinx lattices carry LM scores: its scale is Kaldi's 1/LMWT, near 0.1
    scales=""; [ "${m}" = pocketsphinx ] && scales=${ps_scales}
    # shellcheck disable=SC2086
    python -m speechlm.bin.calibrate_wcn ${dev_opts} ${apply_opts} ${scales:+--scales "${scales}"} \
      --report "${exp}/${m}/calibration.json"
  done
fi

slu_dir=${exp}/slu_icl
if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
  stage_log 4 "in-context SLU dir: ${llm}, the few-shot pool ${data}/local/slu_train.jsonl"
  # the same instruction for every input kind: only the query line changes
  python -m speechlm.bin.slu train --mode icl --llm "${llm}" --shots "${shots}" \
    --train-jsonl "${data}/local/slu_train.jsonl" --out "${slu_dir}" --overwrite \
    --wcn-threshold "${wcn_threshold}" \
    --instruction "Intent of each voice assistant request. Requests may be speech recognizer output: hypotheses split by '|', word alternatives by '/' with their probabilities."
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
  stage_log 5 "intent classification: ${asr_models} x {${sets// /,}} x {${voices// /,}} x {${inputs// /,}}"
  eval_sets=${sets#dev }    # dev only tunes the acoustic scale
  first_voice=${voices%% *}; first_model=${asr_models%% *}
  kinds_of() {  # kinds_of MODEL VOICE INPUT...: the inputs to classify for that pair
    local m=$1 v=$2 i out=""; shift 2
    for i in "$@"; do
      # the reference text is the same sentences for every voice and model: once a set
      [ "${i}" = text ] && { [ "${v}" = "${first_voice}" ] && [ "${m}" = "${first_model}" ] || continue; }
      out+=" ${i}"
    done
    echo "${out}"
  }
  for sel in ${selections}; do
    for m in ${asr_models}; do
      for s in ${eval_sets}; do
        for v in ${voices}; do
          # shellcheck disable=SC2046,SC2086
          predict_icl "${sel}" "${m}" "${s}" "${v}" $(kinds_of "${m}" "${v}" ${inputs})
        done
      done
    done
  done
  if [ "${knn}" -gt 0 ]; then
    # the same pool with no LM: its nearest sentences vote (a marginalized input with the
    # weighted mean embedding of its hypotheses); what does the LM add to its shots?
    # With --knn_choices every count also classifies dev, where one of them is chosen.
    knn_sets=${eval_sets}; [ -z "${knn_choices}" ] || knn_sets="dev ${eval_sets}"
    for n in ${knn} ${knn_choices}; do
      for m in ${asr_models}; do
        for s in ${knn_sets}; do
          for v in ${voices}; do
            # shellcheck disable=SC2046,SC2086
            predict_icl --opt "--knn=${n}" --out "${exp}/${m}/knn/neighbors_${n}/${s}_${v}" \
              - "${m}" "${s}" "${v}" $(kinds_of "${m}" "${v}" ${knn_inputs})
          done
        done
      done
    done
    # shellcheck disable=SC2086
    python local/knn_results.py --exp "${exp}" --data "${data}" --models ${asr_models} \
      --sets ${eval_sets} --voices ${voices} --inputs ${knn_inputs} --knn "${knn}" \
      --choices ${knn_choices} --selection "${selections%% *}" --cmdline "${cmdline}"
  fi
  if [ "${selections}" != "${selections%% *}" ]; then
    # the paper's shot-selection analysis: every selection side by side, paired tests
    # shellcheck disable=SC2086
    python local/selection_results.py --exp "${exp}" --data "${data}" --models ${asr_models} \
      --sets ${eval_sets} --voices ${voices} --inputs ${inputs} --selections ${selections} \
      --cmdline "${cmdline}"
  fi
  if [ -n "${tune_marginal}" ]; then
    # how many hypotheses, and how far to trust their weights: chosen on dev, scored on test
    sel=${selections%% *}
    for m in ${asr_models}; do
      for i in ${tune_marginal}; do
        cal=""; [ "${i}" = wcn_marg ] && cal=_cal  # wcn_marg reads the calibrated WCN
        dev_opts=""
        for v in ${voices}; do dev_opts+=" --dev ${exp}/${m}/decode_dev_${v}${cal} ${data}/dev_${v}"; done
        # shellcheck disable=SC2086
        python -m speechlm.bin.slu tune-marginal --model-dir "${slu_dir}" --input "${i}" \
          ${dev_opts} --ks "${marginal_ks}" --scales "${marginal_scales}" \
          --shot-selection "${sel}" --out "${exp}/${m}/marginal_${i}.json" --threads 1 \
          --nj "${nj}" --no-progress
        # the noise sets too: the test sentences at each SNR, never seen by the choice
        for s in ${eval_sets} ${noise_sets}; do
          for v in ${voices}; do
            python -m speechlm.bin.slu predict --model-dir "${slu_dir}" --input "${i}" \
              --marginal-from "${exp}/${m}/marginal_${i}.json" --shot-selection "${sel}" \
              --decode-dir "${exp}/${m}/decode_${s}_${v}${cal}" --data-dir "${data}/${s}_${v}" \
              --out "${exp}/${m}/icl_${sel}/${s}_${v}/${i}_tuned" --threads 1 \
              --nj "${nj}" --no-progress
          done
        done
      done
    done
    # shellcheck disable=SC2086
    python local/marginal_results.py --exp "${exp}" --data "${data}" --models ${asr_models} \
      --sets ${eval_sets} --voices ${voices} --inputs ${tune_marginal} --selection "${sel}" \
      --cmdline "${cmdline}"
  fi
  if [ -n "${noise_levels}" ]; then
    # accuracy vs first-pass WER: the test sentences at each SNR, read as ${noise_inputs}
    for sel in ${selections}; do
      for m in ${asr_models}; do
        for s in ${noise_sets}; do
          for v in ${voices}; do
            # shellcheck disable=SC2086
            predict_icl "${sel}" "${m}" "${s}" "${v}" ${noise_inputs}
          done
        done
      done
    done
    tuned=""; for i in ${tune_marginal}; do tuned+=" ${i}_tuned"; done
    # shellcheck disable=SC2086
    python local/noise_results.py --exp "${exp}" --models ${asr_models} --voices ${voices} \
      --levels ${noise_levels} --inputs ${noise_inputs} ${tuned} --selection "${selections%% *}" \
      --cmdline "${cmdline}"
  fi
  if [ -n "${wcn_sweep}" ]; then
    # the paper's WCN analyses: pruning threshold, with / without posteriors (every first
    # pass, the first selection; the main run's WCN is the point at ${wcn_threshold})
    sel=${selections%% *}
    for m in ${asr_models}; do
      for s in ${eval_sets}; do
        for v in ${voices}; do
          d=${exp}/${m}/icl_wcn/${sel}/${s}_${v}
          for t in ${wcn_sweep}; do
            python -m speechlm.bin.slu predict --model-dir "${slu_dir}" --input wcn \
              --wcn-threshold "${t}" --shot-selection "${sel}" \
              --decode-dir "${exp}/${m}/decode_${s}_${v}" --data-dir "${data}/${s}_${v}" \
              --out "${d}/t${t}" --threads 1 --nj "${nj}" \
              --no-progress
          done
          python -m speechlm.bin.slu predict --model-dir "${slu_dir}" --input wcn \
            --wcn-threshold "${wcn_threshold}" --no-wcn-posteriors --shot-selection "${sel}" \
            --decode-dir "${exp}/${m}/decode_${s}_${v}" --data-dir "${data}/${s}_${v}" \
            --out "${d}/noprob" --threads 1 --nj "${nj}" \
            --no-progress
        done
      done
    done
    # shellcheck disable=SC2086
    python local/wcn_sweep_results.py --exp "${exp}" --models ${asr_models} --sets ${eval_sets} \
      --voices ${voices} --thresholds ${wcn_sweep} --main_threshold "${wcn_threshold}" \
      --selection "${sel}" --cmdline "${cmdline}"
  fi
  if [ -n "${shots_sweep}" ]; then
    # the paper's shot-count analysis: every first pass, the first selection, ${sweep_inputs}
    sel=${selections%% *}
    for m in ${asr_models}; do
      for n in ${shots_sweep}; do
        for s in ${eval_sets}; do
          for v in ${voices}; do
            # shellcheck disable=SC2086
            predict_icl --shots "${n}" --out "${exp}/${m}/icl_shots/${sel}/${n}/${s}_${v}" \
              "${sel}" "${m}" "${s}" "${v}" ${sweep_inputs}
          done
        done
      done
      # the report quotes each first pass's own sweep: runs for other first passes stay in it
      echo "${cmdline}" > "${exp}/${m}/icl_shots/${sel}/command.txt"
    done
    # shellcheck disable=SC2086
    python local/shot_sweep_results.py --exp "${exp}" --models "${m}" --sets ${eval_sets} \
      --voices ${voices} --inputs ${sweep_inputs} --shots ${shots_sweep} \
      --main_shots "${shots}" --selection "${sel}" --cmdline "${cmdline}"
  fi
  if [ -n "${prompt_sweep}" ]; then
    # the paper's prompt analysis: each part of the main prompt changed alone, every first
    # pass, the first selection, ${prompt_inputs}
    sel=${selections%% *}
    for m in ${asr_models}; do
      for pv in ${prompt_sweep}; do
        case ${pv} in
          no_instruction) popts=(--opt --instruction --opt "") ;;
          no_verbalize) popts=(--opt --no-verbalize) ;;
          calibrate) popts=(--opt --calibrate) ;;
        esac
        for s in ${eval_sets}; do
          for v in ${voices}; do
            # shellcheck disable=SC2086
            predict_icl "${popts[@]}" --out "${exp}/${m}/icl_prompt/${sel}/${pv}/${s}_${v}" \
              "${sel}" "${m}" "${s}" "${v}" ${prompt_inputs}
          done
        done
      done
      echo "${cmdline}" > "${exp}/${m}/icl_prompt/${sel}/command.txt"
    done
    # shellcheck disable=SC2086
    python local/prompt_sweep_results.py --exp "${exp}" --data "${data}" --models ${asr_models} \
      --sets ${eval_sets} --voices ${voices} --inputs ${prompt_inputs} \
      --variants ${prompt_sweep} --selection "${sel}" --cmdline "${cmdline}"
  fi
fi

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ] && [ "${qa}" = true ]; then
  noisy_qa=""; [ -z "${noise_sets}" ] || noisy_qa="; {${noise_sets// /,}} x {${qa_noise_inputs// /,}}"
  stage_log 6 "spoken QA (questions from ${corpus^^}'s slot annotations): {${sets#dev }} x {${voices// /,}} x {${qa_inputs// /,}}${noisy_qa}"
  if [ "${corpus}" = snips ]; then  # the sets' rows carry SNIPS's spans; ids are sentence ids
    ann="--annotations =${data}/local/slu_train.jsonl --annotations =${data}/local/test.jsonl"
  else
    ann="--annotations slurp-=${slurp}/devel.jsonl"
    for t in ${test_jsonl}; do
      ann+=" --annotations test_$(basename "${t}" .jsonl | tr -c 'A-Za-z0-9_\n' _)-=${t}"
    done
  fi
  for m in ${asr_models}; do
    for s in ${sets#dev } ${noise_sets}; do
      noisy=false; [[ " ${noise_sets} " == *" ${s} "* ]] && noisy=true
      for v in ${voices}; do
        asked=" ${qa_inputs} "
        [ "${noisy}" = true ] && asked=" ${qa_noise_inputs} "  # the test sentences at one SNR
        kinds=${asked}  # the reference text is the same sentences for every voice: once
        [ "${v}" = "${voices%% *}" ] || kinds=${kinds/ text / }
        kinds=${kinds/ wcn_marg / }  # read from the calibrated WCN, below
        # shellcheck disable=SC2086
        [ -z "${kinds// /}" ] || python -m speechlm.bin.spoken_qa ${ann} \
          --pool-jsonl "${data}/local/slu_train.jsonl" \
          --data-dir "${data}/${s}_${v}" --decode-dir "${exp}/${m}/decode_${s}_${v}" \
          --input ${kinds} --llm "${llm}" --shots "${qa_shots}" \
          --wcn-threshold "${wcn_threshold}" --out "${exp}/${m}/qa/${s}_${v}" --no-progress
        if [[ "${asked}" == *" wcn_marg "* ]]; then
          # shellcheck disable=SC2086
          python -m speechlm.bin.spoken_qa ${ann} --pool-jsonl "${data}/local/slu_train.jsonl" \
            --data-dir "${data}/${s}_${v}" --decode-dir "${exp}/${m}/decode_${s}_${v}_cal" \
            --input wcn_marg --llm "${llm}" --shots "${qa_shots}" \
            --out "${exp}/${m}/qa/${s}_${v}" --no-progress
        fi
        [ "${noisy}" = true ] && continue  # the threshold sweep: the main test sets only
        for t in ${qa_sweep}; do
          # shellcheck disable=SC2086
          python -m speechlm.bin.spoken_qa ${ann} --pool-jsonl "${data}/local/slu_train.jsonl" \
            --data-dir "${data}/${s}_${v}" --decode-dir "${exp}/${m}/decode_${s}_${v}" \
            --input wcn --llm "${llm}" --shots "${qa_shots}" --wcn-threshold "${t}" \
            --out "${exp}/${m}/qa_sweep/${s}_${v}/t${t}" --no-progress
        done
        if [ -n "${qa_sweep}" ]; then
          # shellcheck disable=SC2086
          python -m speechlm.bin.spoken_qa ${ann} --pool-jsonl "${data}/local/slu_train.jsonl" \
            --data-dir "${data}/${s}_${v}" --decode-dir "${exp}/${m}/decode_${s}_${v}" \
            --input wcn --llm "${llm}" --shots "${qa_shots}" --wcn-threshold "${wcn_threshold}" \
            --wcn-no-posteriors --out "${exp}/${m}/qa_sweep/${s}_${v}/noprob" --no-progress
        fi
      done
    done
  done
  # shellcheck disable=SC2086
  python local/make_results.py --exp "${exp}" --data "${data}" --models ${asr_models} \
    --sets ${sets#dev } ${noise_sets} --voices ${voices} --selections ${selections} \
    --llm "${llm}" --shots "${qa_shots}" --cmdline "${cmdline}" --qa_only --corpus "${corpus}"
fi

if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ]; then
  stage_log 7 "${exp}/RESULTS.md and RESULTS.png"
  # shellcheck disable=SC2086
  python local/make_results.py --exp "${exp}" --data "${data}" --models ${asr_models} \
    --sets ${sets#dev } --voices ${voices} --selections ${selections} --llm "${llm}" \
    --shots "${shots}" --cmdline "${cmdline}" ${stage_times:+--stage_times "${stage_times}"} \
    --corpus "${corpus}" \
    ${notes:+--notes "${notes}"}
  if [[ " ${inputs} " == *" 1best "* && " ${inputs} " == *" oracle "* ]]; then
    # why marginalizing can or cannot close the gap: do the top K hypotheses read as well
    # as the oracle path where the oracle wins? (no LLM) -> RESULTS_reach.md
    # shellcheck disable=SC2086
    python local/reach_results.py --exp "${exp}" --data "${data}" --models ${asr_models} \
      --sets ${sets#dev } ${noise_sets} --voices ${voices} --selection "${selections%% *}" \
      --cmdline "${cmdline}" || log "no RESULTS_reach.md: no first pass with a calibrated WCN and 1-best/oracle predictions"
  fi
fi
log "Successfully finished. [elapsed=${SECONDS}s]"
