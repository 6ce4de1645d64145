"""Energy meter over zeus: joules for a window, or None where nothing can be read.

zeus reads NVIDIA GPUs (NVML) and CPU/DRAM RAPL counters (``/sys/class/powercap``). On a
machine with neither it returns no readings (or zeros); the meter then reports None, and
the metrics say ``null`` rather than a fake 0.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger(__name__)


class EnergyMeter:
    """Measure energy between ``begin()`` and ``end()``.

    Args:
        enabled: False turns the meter off (``end()`` returns None) without importing zeus.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._monitor: Any = None
        self._unavailable = not enabled
        self._window: str | None = None
        self._n = 0

    def _get_monitor(self) -> Any:
        if self._monitor is None and not self._unavailable:
            try:
                import torch
                from zeus.monitor import ZeusMonitor

                gpus = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
                self._monitor = ZeusMonitor(gpu_indices=gpus, approx_instant_energy=False)
            except ModuleNotFoundError as e:  # zeus is an extra: energy stays unknown
                log.info("energy meter unavailable: %s is not installed "
                         "(pip install 'speechlm[energy]')", e.name)
                self._unavailable = True
            except Exception as e:  # no readable device: energy stays unknown
                log.info("energy meter unavailable: %s", e)
                self._unavailable = True
        return self._monitor

    def begin(self) -> None:
        mon = self._get_monitor()
        if mon is None:
            return
        self._n += 1
        self._window = f"speechlm_{id(self)}_{self._n}_{time.monotonic_ns()}"
        mon.begin_window(self._window, sync_execution=False)

    def end(self) -> float | None:
        """Joules since ``begin()``, or None when no source could be read."""
        mon, window, self._window = self._monitor, self._window, None
        if mon is None or window is None:
            return None
        m = mon.end_window(window, sync_execution=False)
        parts = [
            *(m.gpu_energy or {}).values(),
            *(m.cpu_energy or {}).values(),
            *(m.dram_energy or {}).values(),
        ]
        total = float(sum(parts))
        # zeus returns empty dicts (no source) or 0.0 (a source that does not count here):
        # a real window of nonzero length never measures exactly 0 J.
        return total if parts and total > 0 else None
