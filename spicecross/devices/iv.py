"""Sine-driven I–V loops of one VTEAM device in its three forms (numpy reference, ngspice
behavioural subcircuit, Verilog-A in VACASK): run them, compare them, plot them."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .vteam import VTEAMParams
from .vteam_reference import SineDrive, simulate_sine

__all__ = ["FORMS", "MAX_IV_POINTS", "check_iv_size", "rms_difference_pct", "run_forms",
           "plot_iv"]

#: The three forms of a device model, in the order they are shown.
FORMS = ("reference", "ngspice", "vacask")

#: Most time points of one I–V run (the reference grid, and the SPICE forms' steps at 4000 per
#: period): each point holds t, v, i, x in float64 in every form plus the simulators' raw
#: files, so 2e6 points need about half a GB; more is minutes of work for an unreadable plot.
MAX_IV_POINTS = 2_000_000
_SPICE_STEPS_PER_PERIOD = 4000      # transient.default_max_step_s


def check_iv_size(cycles: float, points_per_cycle: int, forms: list[str]) -> int:
    """The reference grid's number of points; ValueError naming the sizes when the run would
    exceed :data:`MAX_IV_POINTS` (in the reference or the SPICE forms)."""
    if not (np.isfinite(cycles) and cycles > 0):
        raise ValueError(f"cycles must be a finite number > 0, got {cycles!r}")
    if not (isinstance(points_per_cycle, (int, np.integer)) and points_per_cycle >= 1):
        raise ValueError(f"points_per_cycle must be a positive integer, got {points_per_cycle!r}")
    spice = bool(set(forms) - {"reference"})
    per_cycle = max(points_per_cycle, _SPICE_STEPS_PER_PERIOD if spice else 0)
    if cycles * per_cycle > MAX_IV_POINTS:
        raise ValueError(f"{cycles:g} cycles × {per_cycle} points per cycle is more than "
                         f"{MAX_IV_POINTS:g} time points; use fewer --cycles (or "
                         "--points-per-cycle)")
    return int(round(cycles * points_per_cycle)) + 1


def rms_difference_pct(t_ref: np.ndarray, i_ref: np.ndarray, t: np.ndarray, i: np.ndarray) -> float:
    """RMS of (i − i_ref) on the reference grid (i interpolated linearly), in % of the peak
    |i_ref|."""
    peak = float(np.max(np.abs(i_ref)))
    diff = np.interp(t_ref, t, i) - i_ref
    return float(np.sqrt(np.mean(diff ** 2)) / peak * 100.0) if peak > 0 else float("nan")


def run_forms(params: VTEAMParams, drive: SineDrive, t_stop_s: float, x0_m: float,
              forms: list[str], points_per_cycle: int = 4000) -> dict[str, tuple]:
    """``{form: (t, v, i, x)}`` for the requested forms (the reference is always computed)."""
    from .behavioural import run_ngspice_transient
    from .verilog_a import run_vacask_transient

    n_points = check_iv_size(t_stop_s * drive.frequency_hz, points_per_cycle, forms)
    out = {"reference": simulate_sine(params, drive, t_stop_s, x0_m, n_points=max(n_points, 201))}
    if "ngspice" in forms:
        out["ngspice"] = run_ngspice_transient(params, t_stop_s, drive, x0_m)
    if "vacask" in forms:
        out["vacask"] = run_vacask_transient(params, t_stop_s, drive, x0_m)
    return out


def _si(value: float) -> str:
    """1.71e6 -> '1.71 M'."""
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}"
    return f"{value:.3g} "


def plot_iv(results: dict[str, tuple], params: VTEAMParams, set_name: str, drive: SineDrive,
            out: Path) -> None:
    """I–V loops and the state over time of each form in ``results`` (from :func:`run_forms`),
    written as a PNG to ``out`` exactly (atomically, whatever its suffix)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    styles = {"reference": dict(color="k", lw=2.4, ls="-", alpha=0.45),
              "ngspice": dict(color="tab:blue", lw=1.2, ls="--"),
              "vacask": dict(color="tab:red", lw=1.0, ls=":")}
    fig = Figure(figsize=(11, 4.3))
    FigureCanvasAgg(fig)
    ax_iv, ax_x = fig.subplots(1, 2)
    for form, (t, v, i, x) in results.items():
        label = "numpy reference" if form == "reference" else \
            ("ngspice behavioural" if form == "ngspice" else "Verilog-A (VACASK)")
        ax_iv.plot(v, i * 1e3, label=label, **styles[form])
        ax_x.plot(t * drive.frequency_hz, (x - params.x_on_m) / params.x_span_m, label=label,
                  **styles[form])
    ax_iv.set_xlabel("voltage (V)")
    ax_iv.set_ylabel("current (mA)")
    ax_iv.axhline(0, color="0.7", lw=0.6)
    ax_iv.axvline(0, color="0.7", lw=0.6)
    ax_iv.set_title(f"VTEAM '{set_name}': {drive.amplitude_v:g} V, {_si(drive.frequency_hz)}Hz sine")
    ax_iv.legend(loc="upper left", fontsize=8)
    ax_x.set_xlabel("time (drive periods)")
    ax_x.set_ylabel("state (x − x_on)/(x_off − x_on)")
    ax_x.set_ylim(-0.05, 1.05)
    ax_x.set_title("state: 0 = ON (r_on), 1 = OFF (r_off)")
    for ax in (ax_iv, ax_x):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    from ..store import atomic_path

    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
