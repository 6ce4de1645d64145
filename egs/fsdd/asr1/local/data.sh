#!/usr/bin/env bash
# local/data.sh: FSDD -> data/{train,dev,test,test_seen} (see local/prepare_fsdd.py).
set -euo pipefail
fsdd=; dev_speaker=yweweler; max_index=49
. utils/parse_options.sh
[ -n "${fsdd}" ] || { echo "local/data.sh: --fsdd DIR is required" >&2; exit 1; }
python local/prepare_fsdd.py --fsdd "${fsdd}" --dev-speaker "${dev_speaker}" \
  --max-index "${max_index}" --out data
