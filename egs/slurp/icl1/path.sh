# path.sh: the environment every stage runs in.
# Use the project's virtualenv when there is one (tools/setup.sh makes it).
_speechlm_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f "${_speechlm_root}/.venv/bin/activate" ]; then
  . "${_speechlm_root}/.venv/bin/activate"
fi
export PYTHONIOENCODING=UTF-8
export LC_ALL=C
# Nothing is fetched at run time (NLTK, Hugging Face): fail fast instead of hanging.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export NLTK_DATA="${NLTK_DATA:-${_speechlm_root}/.venv/nltk_data}"
