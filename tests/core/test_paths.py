"""speechlm.core.paths: the shared data root from an argument, SPEECHLM_DATA or the checkout."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import speechlm.core.paths as paths


@pytest.fixture
def root(tmp_path):
    (tmp_path / "fsdd" / "recordings").mkdir(parents=True)
    return tmp_path


def test_argument_wins_over_env(root, tmp_path_factory, monkeypatch):
    other = tmp_path_factory.mktemp("other")
    monkeypatch.setenv("SPEECHLM_DATA", str(other))
    assert paths.data_dir("fsdd", root=root) == root.resolve() / "fsdd"
    assert paths.data_dir("fsdd") is None  # $SPEECHLM_DATA has no fsdd: no fall-through
    assert paths.data_root() == other.resolve()


def test_env_var_and_logging(root, monkeypatch, caplog):
    monkeypatch.setenv("SPEECHLM_DATA", str(root))
    monkeypatch.setattr(paths, "_logged", set())
    with caplog.at_level(logging.INFO, logger="speechlm.core.paths"):
        assert paths.data_dir("fsdd/recordings") == root.resolve() / "fsdd" / "recordings"
        paths.data_dir("fsdd")
    said = [r.getMessage() for r in caplog.records]
    assert said == [f"shared data: {root.resolve()} (from $SPEECHLM_DATA)"]  # once


@pytest.mark.parametrize("how", ["argument", "env"])
def test_missing_root_is_an_error_naming_it(tmp_path, monkeypatch, how):
    missing = tmp_path / "nope"
    if how == "env":
        monkeypatch.setenv("SPEECHLM_DATA", str(missing))
    with pytest.raises(FileNotFoundError, match=f"{missing}.*does not exist"):
        paths.data_dir("fsdd", root=missing if how == "argument" else None)


def test_beside_the_checkout_only_in_a_checkout(tmp_path, monkeypatch):
    monkeypatch.delenv("SPEECHLM_DATA", raising=False)
    repo = tmp_path / "clone"
    (repo / "speechlm").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("")
    monkeypatch.setattr(paths, "checkout_root", lambda: repo)
    assert paths.data_root() is None  # no ../shared/data yet
    (tmp_path / "shared" / "data" / "slurp").mkdir(parents=True)
    assert paths.data_dir("slurp") == (tmp_path / "shared" / "data" / "slurp").resolve()
    monkeypatch.setattr(paths, "checkout_root", lambda: None)  # an installed wheel
    assert paths.data_root() is None


def test_checkout_root_is_this_repo():
    here = Path(__file__).resolve().parents[2]
    assert paths.checkout_root() == here


def test_no_machine_path_in_shipped_code():
    shipped = Path(paths.__file__).resolve().parents[1]
    offenders = [str(p.relative_to(shipped)) for p in shipped.rglob("*.py")
                 if "/work/shared" in p.read_text(encoding="utf-8")]
    assert offenders == []
