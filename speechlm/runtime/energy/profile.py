"""Time and energy of each computation at each frequency: a versioned JSON profile.

File format (``FORMAT_VERSION`` 1)::

    {"format": "speechlm-energy-profile", "version": 1,
     "source": "measured" | "modelled" | "measured-at-current-clock",
     "device": "free text", "note": "free text",
     "computations": {"stage0.forward": {"1410": {"time_s": 0.021, "energy_j": 6.3}, ...}}}

Frequencies are MHz (JSON keys are strings). Every computation must list the same
frequencies, with positive times that do not grow with frequency and non-negative energies
(``validate``). ``energy_j`` may be null in a measured profile where nothing could be read
(then it cannot be planned, only reported).

``modelled`` makes a profile from a documented model, not a measurement:

- time(f)   = t_mem + t_compute * f_max / f      (compute scales with 1/f above a
  memory-bound floor t_mem that no clock speeds up)
- power(f)  = P_static + P_dynamic * (f / f_max)^3   (dynamic power ~ C V^2 f, with V
  roughly proportional to f in the DVFS range)
- energy(f) = power(f) * time(f)

Its output says ``"source": "modelled"`` and the CLI prints that label.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from speechlm.core.errors import InputError

FORMAT = "speechlm-energy-profile"
FORMAT_VERSION = 1


class ProfileError(InputError):
    """A profile that cannot be planned with; the message names the file and computation."""


@dataclass(frozen=True)
class Option:
    """One way to run a computation: at ``freq`` MHz it takes ``time_s`` and ``energy_j``."""

    freq: int
    time_s: float
    energy_j: float | None


@dataclass
class Profile:
    computations: dict[str, list[Option]]  # options sorted by frequency, ascending
    source: str = "measured"
    device: str = ""
    note: str = ""
    origin: str = "<memory>"  # file name for error messages
    extra: dict = field(default_factory=dict)

    @property
    def frequencies(self) -> list[int]:
        first = next(iter(self.computations.values()), [])
        return [o.freq for o in first]

    def options(self, computation: str) -> list[Option]:
        try:
            return self.computations[computation]
        except KeyError:
            raise ProfileError(f"{self.origin}: no computation {computation!r} in the profile "
                               f"(it has {sorted(self.computations)})") from None

    def validate(self, plannable: bool = True) -> None:
        """Raise ``ProfileError`` naming the first bad computation."""
        if not self.computations:
            raise ProfileError(f"{self.origin}: the profile has no computations")
        freqs = None
        for name, opts in self.computations.items():
            where = f"{self.origin}: computation {name!r}"
            if not opts:
                raise ProfileError(f"{where}: no frequencies")
            these = [o.freq for o in opts]
            if freqs is None:
                freqs, first = these, name
            elif these != freqs:
                missing = sorted(set(freqs) - set(these))
                extra = sorted(set(these) - set(freqs))
                raise ProfileError(f"{where}: frequencies differ from {first!r}: "
                                   f"missing {missing}, extra {extra}")
            for o in opts:
                if not (o.freq > 0):
                    raise ProfileError(f"{where}: frequency {o.freq} must be > 0")
                if not (math.isfinite(o.time_s) and o.time_s > 0):
                    raise ProfileError(f"{where} at {o.freq} MHz: time {o.time_s} must be > 0")
                if o.energy_j is None:
                    if plannable:
                        raise ProfileError(f"{where} at {o.freq} MHz: energy is null "
                                           "(not measured), cannot plan with it")
                elif not (math.isfinite(o.energy_j) and o.energy_j >= 0):
                    raise ProfileError(f"{where} at {o.freq} MHz: energy {o.energy_j} < 0")
            for lo, hi in zip(opts, opts[1:], strict=False):
                if hi.time_s > lo.time_s:
                    raise ProfileError(
                        f"{where}: time is not monotone in frequency: {lo.time_s} s at "
                        f"{lo.freq} MHz but {hi.time_s} s at {hi.freq} MHz")

    def to_json(self) -> dict:
        return {
            "format": FORMAT, "version": FORMAT_VERSION, "source": self.source,
            "device": self.device, "note": self.note,
            "computations": {c: {str(o.freq): {"time_s": o.time_s, "energy_j": o.energy_j}
                                 for o in opts} for c, opts in self.computations.items()},
        }

    def save(self, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        tmp.replace(path)


def from_json(obj: dict, origin: str = "<json>", plannable: bool = True) -> Profile:
    """Parse and validate a profile dict (see the module docstring for the format)."""
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ProfileError(f"{origin}: not a speechlm energy profile (format != {FORMAT!r})")
    if obj.get("version") != FORMAT_VERSION:
        raise ProfileError(f"{origin}: profile version {obj.get('version')!r}, this speechlm "
                           f"reads version {FORMAT_VERSION}")
    comps = obj.get("computations")
    if not isinstance(comps, dict):
        raise ProfileError(f"{origin}: field 'computations' must be an object")
    parsed: dict[str, list[Option]] = {}
    for name, by_freq in comps.items():
        if not isinstance(by_freq, dict):
            raise ProfileError(f"{origin}: computation {name!r} must map frequency -> values")
        opts = []
        for f, v in by_freq.items():
            try:
                freq = int(f)
                t, e = v["time_s"], v["energy_j"]
                opts.append(Option(freq, float(t), None if e is None else float(e)))
            except (KeyError, TypeError, ValueError):
                raise ProfileError(f"{origin}: computation {name!r} frequency {f!r}: want "
                                   f'{{"time_s": number, "energy_j": number}}, got {v!r}') from None
        parsed[name] = sorted(opts, key=lambda o: o.freq)
    prof = Profile(parsed, source=str(obj.get("source", "measured")),
                   device=str(obj.get("device", "")), note=str(obj.get("note", "")),
                   origin=origin)
    prof.validate(plannable=plannable)
    return prof


def load(path: str | Path, plannable: bool = True) -> Profile:
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ProfileError(f"{path}: not JSON: {e}") from None
    return from_json(obj, origin=str(path), plannable=plannable)


# Modelled pipelines after the paper's setup (A100-like clocks 1005..1410 MHz in 15 MHz
# steps are too many for exhaustive checks; we keep 7 levels). Per stage: forward compute
# seconds at f_max, memory-bound floor, backward ~2x forward. Stage imbalance follows the
# usual cause: the first stage carries the embedding, the last the LM head and loss.
A100_FREQS = (1005, 1080, 1140, 1215, 1275, 1350, 1410)
MODELS = {
    # name: (stages, forward compute s per microbatch, memory floor s, last-stage extra)
    "gpt3": dict(stages=8, fwd=0.030, floor=0.004, first_extra=0.10, last_extra=0.35),
    "bloom": dict(stages=8, fwd=0.040, floor=0.006, first_extra=0.20, last_extra=0.50),
}
P_STATIC_W, P_DYNAMIC_W = 90.0, 310.0  # A100-ish: ~100 W idle-ish floor, ~400 W at f_max


def modelled_option(freq: int, f_max: int, compute_s: float, floor_s: float) -> Option:
    """One option of the documented model (module docstring)."""
    t = floor_s + compute_s * f_max / freq
    p = P_STATIC_W + P_DYNAMIC_W * (freq / f_max) ** 3
    return Option(freq, t, p * t)


def modelled(model: str, stages: int | None = None,
             freqs: tuple[int, ...] = A100_FREQS) -> Profile:
    """A labelled *modelled* profile for ``stageK.forward``/``stageK.backward``."""
    if model not in MODELS:
        raise ProfileError(f"unknown modelled profile {model!r}; choose from {sorted(MODELS)}")
    m = MODELS[model]
    n = stages or m["stages"]
    f_max = max(freqs)
    comps = {}
    for s in range(n):
        scale = 1.0 + (m["first_extra"] if s == 0 else 0) + (m["last_extra"] if s == n - 1 else 0)
        for kind, mult in (("forward", 1.0), ("backward", 2.0)):
            comps[f"stage{s}.{kind}"] = [
                modelled_option(f, f_max, m["fwd"] * mult * scale, m["floor"] * mult)
                for f in sorted(freqs)]
    return Profile(comps, source="modelled", device="modelled A100-like GPU",
                   note=f"MODELLED {model}-like pipeline ({n} stages), not measured: "
                        "time = floor + compute*f_max/f, power = "
                        f"{P_STATIC_W:g} + {P_DYNAMIC_W:g}*(f/f_max)^3 W",
                   origin=f"modelled:{model}")
