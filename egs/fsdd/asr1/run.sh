#!/usr/bin/env bash
# egs/fsdd/asr1/run.sh: ESPnet2 conformer CTC/attention ASR on the Free Spoken Digit Dataset,
# on Whisper-tiny encoder frames, with a Whisper second pass.
#
#   ./run.sh                        # all stages
#   ./run.sh --stage 6 --test_sets "test /path/to/another/data_dir"
#   ./run.sh --fbank_config conf/fbank.yaml --asr_config conf/tuning/train_asr_fbank.yaml \
#            --speed_perturb_factors "0.9 1.0 1.1"   # fbank instead of Whisper frames (README.md)
#
# Stages: 1 data dirs, 2 synthetic extra speech (espeak-ng), 3 speed/volume perturbation,
# 4 features (Whisper encoder frames or fbank) + CMN, 5 training, 6 decoding (beam search),
# 7 lattice decoding (TLG graph from the training text; lattices, confusion networks, CTM,
# oracle WERs), 8 Whisper second pass (stage 7's N-best and the closed vocabulary rescored
# by Whisper, teacher-forced; weight tuned on dev), 9 scoring and RESULTS.md.
# Every stage skips work that is already done, so re-running is cheap.
set -euo pipefail

stage=1; stop_stage=100; nj=2
ngpu=0                          # GPUs for training (ESPnet DDP over them when more than one)
cpu_procs=1                     # without GPUs: data-parallel training processes (DDP, gloo)
fsdd=                           # FSDD root; default: $FSDD_ROOT, $SPEECHLM_DATA/fsdd, ../shared/data/fsdd
dev_speaker=yweweler            # never trained on: dev = its takes 5-49, test = takes 0-4
max_index=49                    # use takes 0..max_index only (small subsets for tests)
test_sets="test test_seen"      # names under data/, or paths of other Kaldi data dirs
use_synth=true                  # add espeak-ng digits by many voices to the training data
synth_voices=120
speed_perturb_factors="1.0"      # the fbank model used "0.9 1.0 1.1"
volume_range="0.125 2"          # random gain per recording (Kaldi's volume perturbation); "" for none
asr_config=conf/train_asr.yaml
fbank_config=conf/whisper_feats.yaml  # features: Whisper-tiny encoder frames; conf/fbank.yaml: fbank
cmn=speaker                     # per-speaker mean normalisation of the features ("none" to skip)
decode_config=conf/decode.yaml
lattice_config=conf/decode_lattice.yaml
lm_order=2                      # word n-gram of the decoding graph, from data/train/text
whisper_pass=true               # stage 8: rescore the N-best with Whisper (local/whisper_pass.py)
whisper_model=whisper-tiny.en   # catalogue name or CTranslate2 dir of the stage-8 scorer
whisper_window_s=30             # stage 8 pads the audio to this many seconds (Whisper's own 30)
asr_tag=
help_message="usage: $0 [--stage N] [--stop_stage N] [--nj N] [--fsdd DIR] [--test_sets 'a b'] ..."

. ./path.sh; . ./cmd.sh; . utils/parse_options.sh

. utils/log.sh  # log, stage_log (stage times in the log)
[ -n "${asr_tag}" ] || asr_tag=$(basename "${asr_config}" .yaml)
asr_exp=exp/asr_${asr_tag}
valid_set=dev
feats_tag=$(basename "${fbank_config}" .yaml)
dumpdir=dump                           # fbank features: dump/<set>; others: dump/<config name>/<set>
[ "${feats_tag}" = fbank ] || dumpdir=dump/${feats_tag}
train_sp=train_sp                      # what the model trains on (stage 3)
[ "${use_synth}" = true ] && train_sp=train_sp_synth

if [ -z "${fsdd}" ]; then
  # ../shared/data beside the checkout is a development convenience; SPEECHLM_DATA is the rule
  for d in "${FSDD_ROOT:-}" "${SPEECHLM_DATA:+${SPEECHLM_DATA}/fsdd}" ../../../../shared/data/fsdd; do
    [ -n "${d}" ] && [ -d "${d}/recordings" ] && { fsdd=${d}; break; }
  done
fi
if [ -n "${fsdd}" ]; then log "FSDD: using $(cd "${fsdd}" && pwd)"; fi

# Sets to decode: dev, then each test set, a name under data/ or the path of a data dir.
eval_names=("${valid_set}"); eval_dirs=("data/${valid_set}")
for t in ${test_sets}; do
  if [[ "${t}" != */* ]]; then eval_names+=("${t}"); eval_dirs+=("data/${t}")
  else eval_names+=("$(basename "${t}")"); eval_dirs+=("${t}"); fi
done

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
  stage_log 1 "Kaldi data dirs -> data/{train,dev,test,test_seen} (dev speaker: ${dev_speaker})"
  [ -n "${fsdd}" ] || { log "FSDD not found: pass --fsdd DIR, or set FSDD_ROOT or SPEECHLM_DATA"; exit 1; }
  if [ ! -f data/.done_stage1 ] || [ "$(cat data/.done_stage1)" != "${fsdd} ${dev_speaker} ${max_index}" ]; then
    local/data.sh --fsdd "${fsdd}" --dev_speaker "${dev_speaker}" --max_index "${max_index}"
    echo "${fsdd} ${dev_speaker} ${max_index}" > data/.done_stage1
  fi
  for d in data/train "${eval_dirs[@]}"; do
    python -m speechlm.bin.validate_data_dir "${d}"
  done
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ] && [ "${use_synth}" = true ]; then
  stage_log 2 "espeak-ng digits, ${synth_voices} voices with noise/reverb -> data/synth"
  python local/digit_prompts.py > data/synth_prompts.txt
  python -m speechlm.bin.synth_data_dir --text data/synth_prompts.txt \
    --num-voices "${synth_voices}" --seed 0 --augment --out data/synth
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
  stage_log 3 "speed (${speed_perturb_factors}) and volume (${volume_range:-none}) perturbation -> data/train_sp"
  # shellcheck disable=SC2086
  python -m speechlm.bin.speed_perturb --src data/train --dst data/train_sp \
    --factors ${speed_perturb_factors} ${volume_range:+--volume-range ${volume_range}}
  if [ "${use_synth}" = true ]; then
    # The synthetic voices already vary in rate and pitch: they are not speed-perturbed.
    python -m speechlm.bin.combine_data_dirs --dst "data/${train_sp}" data/train_sp data/synth
  fi
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
  stage_log 4 "features (${fbank_config}, CMN: ${cmn}) -> ${dumpdir}/<set>, global CMVN of ${train_sp}"
  python -m speechlm.bin.compute_fbank --cmd "${train_cmd}" --data-dir "data/${train_sp}" --out-dir "${dumpdir}/${train_sp}" \
    --config "${fbank_config}" --nj "${nj}" --cmvn-out "${dumpdir}/${train_sp}/cmvn.npz" --cmn "${cmn}"
  # dev is normalised with the training features' prior (${dumpdir}/<train>/cmn.yaml)
  python -m speechlm.bin.compute_fbank --cmd "${train_cmd}" --data-dir "data/${valid_set}" --out-dir "${dumpdir}/${valid_set}" \
    --config "${fbank_config}" --nj "${nj}" --cmn "${cmn}" \
    $([ "${cmn}" = speaker ] && echo --cmn-from "${dumpdir}/${train_sp}/cmn.yaml")
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
  stage_log 5 "ESPnet2 training (${asr_config}) -> ${asr_exp}"
  python -m speechlm.bin.train_asr --train-data "data/${train_sp}" --train-feats "${dumpdir}/${train_sp}" \
    --valid-data "data/${valid_set}" --valid-feats "${dumpdir}/${valid_set}" \
    --config "${asr_config}" --fbank-config "${fbank_config}" --exp "${asr_exp}" \
    --decode-config "${decode_config}" --ngpu "${ngpu}" --cpu-procs "${cpu_procs}"
fi

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
  stage_log 6 "decoding ${eval_names[*]} with ${asr_exp}/model"
  for i in "${!eval_names[@]}"; do
    python -m speechlm.bin.decode --cmd "${decode_cmd}" \
      --model-dir "${asr_exp}/model" --data-dir "${eval_dirs[$i]}" \
      --out "${asr_exp}/decode_${eval_names[$i]}" --nj "${nj}" --config "${decode_config}"
  done
fi

if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ]; then
  stage_log 7 "lattice decoding ${eval_names[*]} (graph: ${asr_exp}/graph)"
  # The graph's lexicon and n-gram come from the training transcripts only.
  python -m speechlm.bin.make_graph --model-dir "${asr_exp}/model" --text data/train/text \
    --order "${lm_order}" --out "${asr_exp}/graph"
  for i in "${!eval_names[@]}"; do
    python -m speechlm.bin.decode --cmd "${decode_cmd}" \
      --model-dir "${asr_exp}/model" --graph "${asr_exp}/graph" \
      --lattice --data-dir "${eval_dirs[$i]}" --out "${asr_exp}/decode_lattice_${eval_names[$i]}" \
      --nj "${nj}" --config "${lattice_config}"
  done
fi

if [ ${stage} -le 8 ] && [ ${stop_stage} -ge 8 ] && [ "${whisper_pass}" = true ]; then
  stage_log 8 "Whisper second pass (${whisper_model}) over ${eval_names[*]}, weight tuned on ${valid_set}"
  # Candidates: each utterance's lattice N-best plus, for a closed vocabulary (FSDD's ten digits),
  # every distinct training transcript; scores cached in ${asr_exp}/whisper_pass/<set>.
  python local/whisper_pass.py --exp "${asr_exp}" --sets "${eval_names[@]}" --dirs "${eval_dirs[@]}" \
    --model "${whisper_model}" --window-s "${whisper_window_s}" --closed-set-from data/train/text \
    --nj "${nj}"
fi

if [ ${stage} -le 9 ] && [ ${stop_stage} -ge 9 ]; then
  stage_log 9 "scoring -> ${asr_exp}/RESULTS.md"
  python local/make_results.py --exp "${asr_exp}" --config "${asr_config}" \
    --sets "${eval_names[@]}" --dirs "${eval_dirs[@]}" --dev-speaker "${dev_speaker}" \
    --use-synth "${use_synth}" --speed-perturb "${speed_perturb_factors}" \
    --volume-range "${volume_range}" --elapsed "${SECONDS}" --lattice-config "${lattice_config}" \
    --cmn "${cmn}"
  cat "${asr_exp}/RESULTS.md"
fi
log "Successfully finished. [elapsed=${SECONDS}s]"
