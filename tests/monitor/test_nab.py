"""NAB-form reader, time split, metrics and classic detectors."""
from __future__ import annotations

import json

import numpy as np
import pytest
from nab_helpers import make_nab_dir, stamp, write_series

from speechlm.monitor.detectors import (
    DETECTORS,
    fill_forward,
    fit_threshold,
    score_series,
    threshold_of,
)
from speechlm.monitor.nab import NABError, read_nab, split
from speechlm.monitor.scoring import point_adjust, ranges, score


def test_reads_a_nab_dir_with_labels(tmp_path):
    series = read_nab(make_nab_dir(tmp_path))
    assert [s.key for s in series] == ["synthA/quiet.csv", "synthA/spikes.csv",
                                       "synthB/shift.csv"]
    spikes = series[1]
    assert len(spikes) == 600 and np.flatnonzero(spikes.labels).tolist() == \
        [148, 149, 150, 151, 152, 448, 449, 450, 451, 452]
    assert spikes.timestamps[1] - spikes.timestamps[0] == 300


def test_split_by_time_cuts_the_windows(tmp_path):
    shift = read_nab(make_nab_dir(tmp_path))[2]
    train, test = split(shift, 0.5)
    assert len(train) == len(test) == 300
    assert train.timestamps[-1] < test.timestamps[0]
    assert train.labels.sum() == 20 and test.labels.sum() == 20
    assert np.array_equal(np.r_[train.labels, test.labels], shift.labels)


def _labels(root, mapping):
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "labels" / "combined_windows.json").write_text(json.dumps(mapping))


def test_labels_naming_a_missing_series(tmp_path):
    make_nab_dir(tmp_path)
    data = json.loads((tmp_path / "labels/combined_windows.json").read_text())
    _labels(tmp_path, {**data, "synthC/gone.csv": []})
    with pytest.raises(NABError, match="names 1 series not under .*synthC/gone.csv"):
        read_nab(tmp_path)


def test_series_without_labels_entry(tmp_path):
    make_nab_dir(tmp_path)
    write_series(tmp_path, "synthC/new.csv", [1.0, 2.0, 3.0])
    with pytest.raises(NABError, match="no entry for synthC/new.csv"):
        read_nab(tmp_path)


@pytest.mark.parametrize("rows,match", [
    (["time,value", "2015-01-01 00:00:00,1"], "header must be 'timestamp,value'"),
    (["timestamp,value", "yesterday,1"], "line 2: bad timestamp 'yesterday'"),
    (["timestamp,value", "2015-01-01 00:00:00,1,2"], "line 2: expected 2 fields"),
    (["timestamp,value"], "no data rows"),
])
def test_bad_csv_names_file_and_line(tmp_path, rows, match):
    (tmp_path / "data/g").mkdir(parents=True)
    (tmp_path / "data/g/x.csv").write_text("\n".join(rows) + "\n")
    _labels(tmp_path, {"g/x.csv": []})
    with pytest.raises(NABError, match=r"x\.csv: .*" + match):
        read_nab(tmp_path)


def test_gaps_nan_constant_and_backward_time_are_handled_and_noted(tmp_path):
    stamps = [stamp(i) for i in (0, 1, 2, 3, 40, 41, 42, 43)]
    write_series(tmp_path, "g/gaps.csv", [1, 2, "", "nan", 5, 6, 7, 8], stamps=stamps)
    write_series(tmp_path, "g/flat.csv", [4.0] * 8)
    back = [stamp(i) for i in (0, 1, 2, 5, 3, 4, 6, 7)]
    write_series(tmp_path, "g/back.csv", list(range(8)), stamps=back)
    _labels(tmp_path, {"g/gaps.csv": [], "g/flat.csv": [], "g/back.csv": []})
    back_s, flat, gaps = read_nab(tmp_path)
    assert np.isnan(gaps.values[[2, 3]]).all()
    assert any("2 missing values" in n for n in gaps.notes)
    assert any("1 gaps" in n for n in gaps.notes)
    assert "constant values" in flat.notes
    assert not score_series("zscore", flat.timestamps, flat.values, 4).any()
    assert np.all(np.diff(back_s.timestamps) > 0) and back_s.values.tolist()[3:6] == [4, 5, 3]
    assert any("backward steps (first at line 6)" in n for n in back_s.notes)
    with pytest.raises(NABError, match=r"back\.csv: line 6: .* must not go back"):
        read_nab(tmp_path, strict=True)


def test_metrics_by_hand():
    y = np.array([0, 1, 1, 1, 1, 0, 0, 0, 1, 1], dtype=bool)
    p = np.array([0, 1, 0, 0, 0, 0, 1, 0, 0, 0], dtype=bool)
    assert ranges(y) == [(1, 5), (8, 10)]
    assert point_adjust(p, y).tolist() == [0, 1, 1, 1, 1, 0, 1, 0, 0, 0]
    s = score([p], [y])
    assert s["point"]["precision"] == 0.5 and s["point"]["recall"] == pytest.approx(1 / 6)
    assert s["point_adjusted"]["recall"] == pytest.approx(4 / 6)
    # range: real (1,5) covers 1/4, (8,10) 0 -> recall 1/8; predictions (1,2) 1, (6,7) 0 -> 1/2
    assert s["range"]["recall"] == pytest.approx(1 / 8)
    assert s["range"]["precision"] == pytest.approx(1 / 2)
    # one prediction spanning two real ranges counts 1/2 toward each (reciprocal cardinality)
    s2 = score([np.ones(10, dtype=bool)], [y])
    assert s2["range"]["precision"] == pytest.approx((4 + 2) / 10 / 2)
    assert score([np.zeros(10, bool)], [y])["range"]["f1"] == 0.0


def test_fill_forward():
    assert fill_forward(np.array([np.nan, 1, np.nan, 3])).tolist() == [1, 1, 1, 3]


@pytest.mark.parametrize("name", DETECTORS)
def test_classic_detectors_find_the_spikes(tmp_path, name):
    spikes = read_nab(make_nab_dir(tmp_path))[1]
    train, test = split(spikes)
    scores = score_series(name, spikes.timestamps, spikes.values, len(train))
    q, f1 = fit_threshold([scores[: len(train)]], [train.labels])
    assert f1 > 0
    pred = scores[len(train):] > threshold_of(scores[: len(train)], q)
    assert score([pred], [test.labels])["point_adjusted"]["recall"] == 1.0
