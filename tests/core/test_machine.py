"""speechlm.core.machine: the machine line of results files comes from the machine."""
import os
import sys

from speechlm.core import machine


def test_summary_counts_cores_and_load(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 5.0, 3.25), raising=False)
    monkeypatch.setattr(machine, "gpu_name", lambda: "GPU H200")
    assert machine.machine_summary() == ("16 CPU cores, load average 3.2 (15 min) when "
                                         "written, GPU H200")


def test_gpu_name_without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    assert machine.gpu_name() == "GPU unknown (no torch)"
