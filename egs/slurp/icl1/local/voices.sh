# local/voices.sh: the recipe's voice kinds (sourced by run.sh): piper = Piper `joe`,
# espeak = sampled espeak-ng voices.

check_voices() {  # check_voices KIND...: every kind is known, else a named error
  local v
  for v in "$@"; do
    case ${v} in
      piper | espeak) ;;
      *) log "--voices: unknown voice kind '${v}' (piper, espeak)"; return 1 ;;
    esac
  done
}

voice_opts() {  # voice_opts KIND: the `speechlm synth-data-dir` options of a voice kind
  case $1 in
    piper) echo "--voices piper:joe" ;;
    espeak) echo "--voices espeak:sampled --num-voices 40 --voices-per-line 1" ;;
    *) log "unknown voice kind $1 (piper, espeak)"; return 1 ;;
  esac
}

voice_seed() {  # voice_seed BASE KIND: BASE + 1 (piper) or BASE + 2 (espeak)
  # the seed names the voice kind, not its place in --voices: a run with --voices piper
  # speaks (and finds complete) the same sets as the default run
  case $2 in
    piper) echo $(($1 + 1)) ;;
    espeak) echo $(($1 + 2)) ;;
    *) log "unknown voice kind $2 (piper, espeak)"; return 1 ;;
  esac
}
