#!/usr/bin/env bash
# egs/nab/argos1/run.sh: Argos (LLM agents write numpy anomaly rules, run sandboxed) on a
# NAB-form data dir, against classic detectors and their aggregation.
#
#   ./run.sh --quick true                    # one group, one chunk (a few LLM calls)
#   ./run.sh                                 # the setting of RESULTS.md (2 chunks per group)
#   ./run.sh --nab /path/to/nab-form/dir     # any NAB-form dir (e.g. the kept-back series)
#   ./run.sh --llm_url http://host:8000/v1 --llm_model NAME   # a stronger rule writer
#
# Stages: 1 read the data and score the classic detectors, 2 train the rules (detection,
# repair, review agents), 3 evaluate classic / rules / aggregators on the test halves,
# 4 online cost of a deployed rule and a fault injected into a real speechlm serve,
# 5 RESULTS.md with a plot.
set -euo pipefail

stage=1; stop_stage=100
nab=                            # default: $SPEECHLM_DATA/nab, ../shared/data/nab
quick=false
llm=smollm2-135m-instruct
llm_url=; llm_model=
max_chunks=2                    # chunks (series with training anomalies) per group
max_repairs=2
train_frac=0.5
classic=seasonal                # the detector the rules are aggregated with
help_message="usage: $0 [--stage N] [--stop_stage N] [--quick true] [--nab DIR] [--llm_url URL]"

cmdline="$0 $*"
. ./path.sh; . ./cmd.sh; . utils/parse_options.sh
. utils/log.sh

if [ -z "${nab}" ]; then
  for d in "${SPEECHLM_DATA:+${SPEECHLM_DATA}/nab}" ../../../../shared/data/nab; do
    [ -n "${d}" ] && [ -f "${d}/labels/combined_windows.json" ] && { nab=${d}; break; }
  done
fi
[ -n "${nab}" ] || { log "NAB-form dir not found: pass --nab DIR or set SPEECHLM_DATA"; exit 1; }
log "NAB: using $(cd "${nab}" && pwd)"
if [ "${quick}" = true ]; then exp=exp/quick; groups="--groups realKnownCause"; max_chunks=1
else exp=exp/full; groups=; fi
llm_opts="--llm ${llm}"
[ -z "${llm_url}" ] || llm_opts="--llm-url ${llm_url} ${llm_model:+--llm-model ${llm_model}}"
mkdir -p "${exp}"

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
  stage_log 1 "reading ${nab}; classic detectors only"
  python -m speechlm.bin.monitor eval --data "${nab}" --train-frac "${train_frac}" \
    | tee "${exp}/classic.md"
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
  stage_log 2 "agents write, repair and review rules (${llm_url:-${llm}})"
  if [ -f "${exp}/argos/train.json" ]; then log "${exp}/argos: already trained"
  else
    python -m speechlm.bin.monitor train --data "${nab}" --out "${exp}/argos" ${llm_opts} \
      --max-chunks "${max_chunks}" --max-repairs "${max_repairs}" \
      --train-frac "${train_frac}" --threads 2 ${groups} 2> "${exp}/train.log"
  fi
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
  stage_log 3 "test halves: classic, rules, rules + ${classic} (or / and / weighted)"
  python -m speechlm.bin.monitor eval --data "${nab}" --exp "${exp}/argos" \
    --train-frac "${train_frac}" --classic "${classic}"
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
  stage_log 4 "online cost: deployed rules on a 360-point history, per evaluated point"
  python local/online_cost.py --rules conf/serve_rules --exp "${exp}/argos" \
    --out "${exp}/online_cost.json"
  log "a slow backend injected into a real speechlm serve, watched by speechlm monitor"
  python local/serve_fault_demo.py --rules conf/serve_rules --out "${exp}/serve_fault.json" \
    || log "no latency alert after the fault (see ${exp}/serve_fault.json)"
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
  stage_log 5 "RESULTS.md"
  python local/make_results.py --exp "${exp}" --cmdline "${cmdline}" --out "${exp}/RESULTS.md" \
    --remote exp/remote/argos
  cat "${exp}/RESULTS.md"
fi
log "Successfully finished. [elapsed=${SECONDS}s]"
