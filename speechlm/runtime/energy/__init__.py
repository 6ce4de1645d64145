"""Energy: a meter that reads joules where the hardware allows, and governors that act
around prefill and decode steps; Perseus frequency planning (``dag``, ``profile``,
``planner``, ``exact``) and its governor (``PerseusGovernor``).

>>> ENERGY_GOVERNORS.names()
['none', 'perseus', 'recording']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from speechlm.runtime.registry import Registry

if TYPE_CHECKING:
    from speechlm.runtime.energy.governor import EnergyGovernor

ENERGY_GOVERNORS = Registry(
    "energy governor",
    {
        "none": "speechlm.runtime.energy.governor:NullGovernor",
        "recording": "speechlm.runtime.energy.governor:RecordingGovernor",
        "perseus": "speechlm.runtime.energy.governor:PerseusGovernor",
    },
)


def build_governor(name: str, conf: dict[str, Any] | None = None) -> EnergyGovernor:
    """Instantiate the governor registered as ``name`` with its ``energy_governor_conf``."""
    return ENERGY_GOVERNORS.resolve(name)(**(conf or {}))


__all__ = ["ENERGY_GOVERNORS", "build_governor"]
