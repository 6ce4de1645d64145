# utils/log.sh: log lines with time and caller, and stage timings, for recipes' run.sh.
#   . utils/log.sh
#   stage_log 3 "features"   # "Stage 3: features"; the previous stage's time is logged first
# The last stage's time is logged when run.sh exits without an error.
log() { echo -e "$(date '+%F %T') (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}) $*"; }

_stage_name=""; _stage_t0=${SECONDS}
_stage_took() {
  [ -z "${_stage_name}" ] || echo -e "$(date '+%F %T') ${_stage_name} took $((SECONDS - _stage_t0)) s"
}
stage_log() {
  _stage_took
  _stage_name="Stage $1"; _stage_t0=${SECONDS}; shift
  echo -e "$(date '+%F %T') (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}) ${_stage_name}: $*"
}
trap 'rc=$?; [ ${rc} -ne 0 ] || _stage_took' EXIT
