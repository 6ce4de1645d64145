import subprocess
from pathlib import Path

import pytest

UTILS = Path(__file__).resolve().parents[2] / "tools" / "kaldi_utils"


def sh(script: str, *args: str) -> subprocess.CompletedProcess:
    body = f"stage=1; stop_stage=9; use_synth=true; name=x\n. {UTILS}/parse_options.sh\n{script}"
    return subprocess.run(["bash", "-c", body, "prog", *args], capture_output=True, text=True)


def test_dash_and_underscore_forms_set_the_variable():
    r = sh('echo "$stage $stop_stage $name"', "--stage", "3", "--stop-stage", "5", "--name", "a b")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "3 5 a b"


@pytest.mark.parametrize("args,msg", [
    (("--no-such", "1"), "unknown option --no-such"),
    (("--use_synth", "yes"), "takes true or false"),
    (("--stage",), "needs a value"),
])
def test_bad_options_fail_clearly(args, msg):
    r = sh("echo ok", *args)
    assert r.returncode != 0 and msg in r.stderr
