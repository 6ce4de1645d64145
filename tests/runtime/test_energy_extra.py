"""Without the energy extra (zeus) the meter reads None and its log names the extra."""
import logging
import sys

from speechlm.runtime.energy.meter import EnergyMeter


def test_meter_without_zeus_names_the_extra(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "zeus", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "zeus.monitor", None)
    meter = EnergyMeter()
    with caplog.at_level(logging.INFO, logger="speechlm.runtime.energy.meter"):
        meter.begin()
        assert meter.end() is None
    assert "pip install 'speechlm[energy]'" in caplog.text
