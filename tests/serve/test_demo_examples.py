"""The demo's example recordings come from the shared data root (SPEECHLM_DATA here)."""
from __future__ import annotations

import pytest


def test_example_files_follow_speechlm_data(tmp_path, monkeypatch):
    from speechlm.serve.demo import EXAMPLES, example_files

    rel = EXAMPLES[0][0]
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / rel).write_bytes(b"RIFF")
    monkeypatch.setenv("SPEECHLM_DATA", str(tmp_path))
    assert example_files() == [str(tmp_path.resolve() / rel)]
    monkeypatch.setenv("SPEECHLM_DATA", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="SPEECHLM_DATA"):
        example_files()
