"""egs/slurp/icl1's voice kinds (local/voices.sh), run in bash as run.sh sources them."""
import subprocess
from pathlib import Path

RECIPE = Path(__file__).parents[2] / "egs" / "slurp" / "icl1"


def _bash(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", "set -eo pipefail; . utils/log.sh; . local/voices.sh; "
                           + script], cwd=RECIPE, capture_output=True, text=True)


def _seeds(voices: str) -> dict[str, int]:
    # the loop of run.sh's stage 1 over its sets "dev test"
    res = _bash(f"i=0; for s in dev test; do for v in {voices}; do "
                'echo "${s}_${v} $(voice_seed $((2 * i)) "${v}")"; done; i=$((i + 1)); done')
    assert res.returncode == 0, res.stderr
    return {k: int(v) for k, v in (line.split() for line in res.stdout.splitlines())}


def test_a_set_keeps_its_seed_whatever_voices_are_asked_for():
    default = _seeds("piper espeak")
    assert default == {"dev_piper": 1, "dev_espeak": 2, "test_piper": 3, "test_espeak": 4}
    # before: --voices piper numbered test_piper 2, and synth-data-dir (whose .done digest
    # holds the seed) would have spoken the main test set anew
    assert _seeds("piper") == {"dev_piper": 1, "test_piper": 3}
    assert _seeds("espeak piper") == default


def test_an_unknown_voice_kind_is_named():
    res = _bash("check_voices piper espeak && check_voices piper festival")
    assert res.returncode == 1
    assert "--voices: unknown voice kind 'festival' (piper, espeak)" in res.stdout + res.stderr
