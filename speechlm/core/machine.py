"""What a results file says about the machine it was measured on, read from the machine
itself: CPU cores, the load average when the report was written (other jobs slow every
stage on a shared machine) and the GPU torch sees. Reports used to carry a fixed sentence
("2 shared CPU cores, loaded by other jobs, no GPU") that is wrong anywhere else.

>>> "CPU cores" in machine_summary()
True
"""

from __future__ import annotations

import os


def gpu_name() -> str:
    """The first CUDA device torch sees, ``"no GPU"`` without one, or ``"GPU unknown"``
    when torch is not installed."""
    try:
        import torch
    except ImportError:
        return "GPU unknown (no torch)"
    return f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"


def machine_summary() -> str:
    """``"<n> CPU cores, load average <x> (15 min) when written, <GPU>"``."""
    load = ""
    if hasattr(os, "getloadavg"):  # not on Windows
        load = f", load average {os.getloadavg()[2]:.1f} (15 min) when written"
    return f"{os.cpu_count()} CPU cores{load}, {gpu_name()}"
