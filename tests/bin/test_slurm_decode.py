"""speechlm decode through a real one-node Slurm cluster (utils/slurm.pl), as a Kaldi user
runs it: the same outputs as the local run (integration; needs root and Debian's
slurm-wlm + munge, which .ci/run installs; tools/slurm_one_node.sh starts the cluster)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from speechlm.testing.shared_data import shared_data_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # ~60 s: run with -m slow
REPO = Path(__file__).resolve().parents[2]
CARDS = shared_data_dir("english_speech_samples/pocketsphinx_cards")


@pytest.fixture(scope="module")
def slurm():
    if os.geteuid() != 0 or shutil.which("slurmctld") is None:
        pytest.skip("needs root and slurm-wlm (bash tools/slurm_one_node.sh install)")
    r = subprocess.run(["bash", str(REPO / "tools" / "slurm_one_node.sh"), "start"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_decode_through_slurm_matches_local(slurm, tmp_path):
    if CARDS is None:
        pytest.skip("shared English samples not found")
    data = tmp_path / "cards"
    data.mkdir()
    utts = sorted(p.stem for p in CARDS.glob("*.wav"))[:4]
    (data / "wav.scp").write_text("".join(f"c{u} {CARDS / (u + '.wav')}\n" for u in utts))
    (data / "utt2spk").write_text("".join(f"c{u} c{u}\n" for u in utts))
    shutil.copy(data / "utt2spk", data / "spk2utt")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               PYTHONPATH=str(REPO))
    common = [sys.executable, "-m", "speechlm.bin.decode", "--backend", "pocketsphinx",
              "--lattice", "--nbest", "3", "--data-dir", str(data)]
    local = subprocess.run([*common, "--out", str(tmp_path / "local")], env=env,
                           capture_output=True, text=True, timeout=600)
    assert local.returncode == 0, local.stderr[-2000:]
    cluster = subprocess.run(
        [*common, "--out", str(tmp_path / "slurm"), "--nj", "2", "--min-utts-per-job", "1",
         "--cmd", f"{REPO}/tools/kaldi_utils/slurm.pl --mem 1G"],
        env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert cluster.returncode == 0, cluster.stderr[-2000:]
    for name in ("text", "nbest.jsonl", "cn.jsonl", "ctm", "lat/words.txt"):
        assert (tmp_path / "slurm" / name).read_text() == \
            (tmp_path / "local" / name).read_text(), name
    logs = sorted((tmp_path / "slurm" / "log").glob("decode.*.log"))
    assert len(logs) == 2, logs  # one per array task
