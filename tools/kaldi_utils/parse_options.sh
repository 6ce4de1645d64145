#!/usr/bin/env bash
# parse_options.sh: turn "--name value" options into shell variables, the Kaldi way.
#
# Source it after setting defaults:  stage=0; nj=4; . utils/parse_options.sh
# "--stop-stage 3" and "--stop_stage 3" both set $stop_stage (the variable must already
# exist, so a typo is an error, not a silent new variable). "--config FILE" sources FILE
# first. Unknown options print the usage ($help_message) and exit 1.

while true; do
  [ -z "${1:-}" ] && break
  case "$1" in
    --help|-h)
      echo -e "${help_message:-usage: $0 [--option value] ...}"; exit 0 ;;
    --config)
      [ -f "${2:-}" ] || { echo "$0: --config ${2:-} is not a file" >&2; exit 1; }
      . "$2"; shift 2 ;;
    --*=*)
      echo "$0: write options as '--name value', not '$1'" >&2; exit 1 ;;
    --*)
      name=$(echo "$1" | sed -e 's/^--//' -e 's/-/_/g')
      if [ -z "${!name+set}" ]; then
        echo "$0: unknown option $1" >&2
        echo -e "${help_message:-}" >&2
        exit 1
      fi
      [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 1; }
      # Booleans stay booleans: only true/false are accepted where the default is one.
      old="${!name}"
      if [ "$old" = true ] || [ "$old" = false ]; then
        case "$2" in true|false) ;; *) echo "$0: $1 takes true or false, got '$2'" >&2; exit 1 ;; esac
      fi
      printf -v "$name" '%s' "$2"
      shift 2 ;;
    *) break ;;
  esac
done
true
