"""Record the real SmolLM2 answers that tests/monitor/test_agents.py replays.

    PYTHONPATH=$PWD python tests/monitor/record_llm_fixture.py

Builds the synthetic NAB-form dir of ``nab_helpers.make_nab_dir`` and runs ``speechlm
monitor train`` on it with the local SmolLM2-135M-Instruct (greedy), appending every
answer to ``fixtures/smollm2_argos.jsonl``. Recorded on 2026-12-04 (2 shared CPU cores):
3 calls (synthA detect; synthB detect, whose rule forgot ``import numpy``, then the repair
that added it), 65-98 s each. Run it again after changing a prompt, the
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

if __name__ == "__main__":
    FIXTURE.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = make_nab_dir(Path(tmp) / "nab")
        sys.exit(main(["train", "--data", str(data), "--out", str(Path(tmp) / "exp"),
                       "--record", str(FIXTURE), "--threads", "2"]))
