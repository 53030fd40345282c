"""What the two SPICE forms of VTEAM share — the ngspice behavioural deck
(:mod:`.behavioural`) and the Verilog-A module in VACASK (:mod:`.verilog_a`): the checks on a
sine-drive transient run, its default time-step ceiling, the boundary layer of the state clip,
the number format, the circuit's names, and reading ``(t_s, v_v, i_a, x_m)`` back from a run
through the :class:`~spicecross.spice.simulators.Simulator` interface.

Both decks are the same circuit: the sine source ``v1`` drives node ``in``; the device instance
``xm`` sits between ``in`` and ground and keeps its normalised state
``w = (x - x_on)/(x_off - x_on)`` on its internal node ``w``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..spice.simulators import SimulationError, Simulator
from .vteam import VTEAMParams
from .vteam_reference import SineDrive

# Width (in normalised state) of the boundary layer over which the SPICE forms stop the state at
# x_on/x_off. A hard stop (motion on until the bound, then none) has no solution for an implicit
# step that would cross the bound, so the step size collapses there ("timestep too small"); a
# stop that ramps down over the last W_EDGE of the range always has one. The state then
# approaches a bound exponentially, with time constant W_EDGE/|dw/dt| (sub-microsecond while
# switching), instead of hitting it in one Euler step.
W_EDGE = 1e-6

#: Names in both decks: the drive source, the driven node, the device instance, its state node.
DRIVE_SOURCE = "v1"
DRIVEN_NODE = "in"
DEVICE_INSTANCE = "xm"
STATE_NODE = "w"


def spice_number(x: float) -> str:
    """Shortest exact text of a float (round-trips), for netlist values."""
    return repr(float(x))


def default_max_step_s(drive: SineDrive, t_stop_s: float) -> float:
    """The time-step ceiling the SPICE forms use by default: 1/4000 of a drive period."""
    return min(drive.period_s / 4000.0, t_stop_s / 100.0)


@dataclass(frozen=True)
class SineRun:
    """A checked sine-drive transient: initial state ``x0_m`` (m) and ``w0`` (normalised, in
    [0, 1]), stop time ``t_stop_s`` and time-step ceiling ``max_step_s`` (s)."""

    x0_m: float
    w0: float
    t_stop_s: float
    max_step_s: float


def check_sine_run(params: VTEAMParams, t_stop_s: float, drive: SineDrive, x0_m: float,
                   max_step_s: float | None = None) -> SineRun:
    """Validate a transient run's inputs (ValueError naming the bad one); ``max_step_s`` None
    means :func:`default_max_step_s`."""
    if not (isinstance(t_stop_s, (int, float, np.floating)) and t_stop_s > 0 and np.isfinite(t_stop_s)):
        raise ValueError(f"t_stop_s must be a finite time > 0 s, got {t_stop_s!r}")
    if not np.isfinite(x0_m) or not params.x_on_m <= x0_m <= params.x_off_m:
        raise ValueError(f"x0_m must lie in [x_on_m, x_off_m] = [{params.x_on_m!r}, "
                         f"{params.x_off_m!r}], got {x0_m!r}")
    w0 = (float(x0_m) - params.x_on_m) / params.x_span_m
    if not isinstance(drive, SineDrive):
        raise ValueError(f"drive must be a SineDrive, got {type(drive).__name__}")
    hmax = default_max_step_s(drive, t_stop_s) if max_step_s is None else float(max_step_s)
    if not hmax > 0:
        raise ValueError(f"max_step_s must be > 0, got {max_step_s!r}")
    return SineRun(float(x0_m), w0, t_stop_s, hmax)


def run_sine_transient(sim: Simulator, text: str, params: VTEAMParams,
                       extra_files: dict[str, str | Path] | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Run a VTEAM sine-drive deck with ``sim``; return ``(t_s, v_v, i_a, x_m)`` at the
    simulator's time points, ``i_a`` the device current from p to n, ``x_m`` the state (m)."""
    plots = sim.run(text, extra_files=extra_files)
    keys = {"t": "time", "v": sim.voltage_key(DRIVEN_NODE), "i": sim.current_key(DRIVE_SOURCE),
            "w": sim.voltage_key(DEVICE_INSTANCE, STATE_NODE)}
    plot = next((p for p in plots if keys["t"] in p), None)
    missing = [k for k in keys.values() if plot is None or k not in plot]
    if missing:
        raise SimulationError(f"{sim.label}: the transient result lacks {', '.join(missing)}")
    i = -plot[keys["i"]]          # source current is positive into its + terminal
    x = params.x_on_m + plot[keys["w"]] * params.x_span_m
    return plot[keys["t"]], plot[keys["v"]], i, x
