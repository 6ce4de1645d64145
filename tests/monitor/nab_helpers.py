"""A small synthetic NAB-form data dir for the monitor tests (and the recorded LLM fixture)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

START = np.datetime64("2015-01-01T00:00:00")


def stamp(i: int, step_s: int = 300) -> str:
    return str(START + np.timedelta64(i * step_s, "s")).replace("T", " ")


def write_series(root: Path, key: str, values, step_s: int = 300, stamps=None) -> None:
    path = root / "data" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    stamps = stamps or [stamp(i, step_s) for i in range(len(values))]
    lines = ["timestamp,value"] + [f"{t},{v}" for t, v in zip(stamps, values, strict=True)]
    path.write_text("\n".join(lines) + "\n")


def make_nab_dir(root: Path, n: int = 600) -> Path:
    """Two groups, three series: spikes, a level shift, and one without anomalies.

    Anomaly windows sit in both halves, so the 50/50 time split has examples to train on.
    """
    rng = np.random.default_rng(7)
    t = np.arange(n)
    daily = 10 + 2 * np.sin(2 * np.pi * t / 288)
    spikes = daily + rng.normal(0, 0.2, n)
    spikes[[150, 450]] += 8.0
    shift = 5 + rng.normal(0, 0.1, n)
    shift[200:220] += 3.0
    shift[480:500] += 3.0
    quiet = 3 + rng.normal(0, 0.1, n)
    write_series(root, "synthA/spikes.csv", np.round(spikes, 4))
    write_series(root, "synthA/quiet.csv", np.round(quiet, 4))
    write_series(root, "synthB/shift.csv", np.round(shift, 4))
    labels = {
        "synthA/spikes.csv": [[stamp(148), stamp(152)], [stamp(448), stamp(452)]],
        "synthA/quiet.csv": [],
        "synthB/shift.csv": [[stamp(200), stamp(219)], [stamp(480), stamp(499)]],
    }
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "labels" / "combined_windows.json").write_text(json.dumps(labels, indent=4))
    return root
