"""Record the real SmolLM2 answers that tests/monitor/test_agents.py replays.

    PYTHONPATH=$PWD python tests/monitor/record_llm_fixture.py

Builds the synthetic NAB-form dir of ``nab_helpers.make_nab_dir`` and runs ``speechlm
monitor train`` on it with the local SmolLM2-135M-Instruct (greedy), appending every
answer to ``fixtures/smollm2_argos.jsonl``. Run it again after changing a prompt, the
summary text or the synthetic data: the replay keys on the exact messages.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from nab_helpers import make_nab_dir  # noqa: E402

from speechlm.bin.monitor import main  # noqa: E402

FIXTURE = HERE / "fixtures" / "smollm2_argos.jsonl"
# A rule broken the way small models break them (an import the sandbox refuses), handed
# to the repair agent so the fixture holds a real repair answer too.
BROKEN = ("import math\nimport numpy as np\n\ndef detect(values, timestamps):\n"
          "    return np.abs(values - np.mean(values)) > 3 * math.sqrt(np.var(values))\n")


def record_repair() -> None:
    from speechlm.api import load_llm
    from speechlm.monitor.agents import ArgosConfig, repair_messages
    from speechlm.monitor.calls import LLMClient
    from speechlm.monitor.sandbox import run_rule

    config = ArgosConfig()
    error = run_rule(BROKEN, []).error
    client = LLMClient(load_llm("smollm2-135m-instruct"), model="smollm2-135m-instruct",
                       record_to=FIXTURE)
    client.chat("repair", config.repair_prompt, repair_messages(BROKEN, error, config),
                config.sampling(0))

if __name__ == "__main__":
    if sys.argv[1:] != ["--repair-only"]:
        FIXTURE.unlink(missing_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            data = make_nab_dir(Path(tmp) / "nab")
            code = main(["train", "--data", str(data), "--out", str(Path(tmp) / "exp"),
                         "--record", str(FIXTURE), "--threads", "2"])
            if code:
                sys.exit(code)
    record_repair()
