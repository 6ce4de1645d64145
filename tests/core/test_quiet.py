"""speechlm.core.quiet: NLTK downloads stopped inside the block (and the runner), not after;
transformers' loading bars hidden in log files, the setting restored after."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from transformers.utils import logging as hf_logging

from speechlm.core.quiet import no_loading_bars, no_nltk_downloads

nltk = pytest.importorskip("nltk")
REPO = Path(__file__).resolve().parents[2]


def test_download_is_a_no_op_only_inside_the_block(monkeypatch):
    attempts = []
    monkeypatch.setattr(socket.socket, "connect", lambda self, addr: attempts.append(addr))
    real = nltk.download
    with no_nltk_downloads():
        assert nltk.download("cmudict") is False
        assert nltk.download is not real
    assert nltk.download is real and attempts == []


def test_runner_runs_a_module_as_main_without_downloads(tmp_path):
    (tmp_path / "fake_trainer.py").write_text(
        "import sys\nimport nltk\n"
        "if __name__ == '__main__':\n"
        "    print(sys.argv[1:], nltk.download('averaged_perceptron_tagger_eng'))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    r = subprocess.run([sys.executable, "-m", "speechlm.core.quiet", "fake_trainer", "--x", "1"],
                       capture_output=True, text=True, env=env, check=True)
    assert r.stdout == "['--x', '1'] False\n"
    assert "nltk_data" not in r.stderr



@pytest.mark.parametrize("tty", [False, True])
def test_loading_bars_hidden_in_a_log_file_and_restored(tty):
    hf_logging.enable_progress_bar()
    with no_loading_bars(tty=tty):
        assert hf_logging.is_progress_bar_enabled() is tty
    assert hf_logging.is_progress_bar_enabled()


def test_loading_bars_stay_off_when_the_user_turned_them_off():
    hf_logging.disable_progress_bar()
    try:
        with no_loading_bars(tty=True):
            assert not hf_logging.is_progress_bar_enabled()
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.enable_progress_bar()
