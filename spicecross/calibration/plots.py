"""Calibration plots: SPICE-vs-surrogate parity per mode and the IR-drop map of a tile."""
from __future__ import annotations

from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from ..store import save_figure_atomic

if TYPE_CHECKING:
    from .calibrate import Calibration


def _figure(figsize: tuple[float, float]):
    """A figure on the Agg canvas (no pyplot, no global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def parity_plot(cal: Calibration, arrays: dict[str, np.ndarray], path: str | Path) -> Path:
    """Held-out sense currents: surrogate (each mode) against SPICE, in µA."""
    ref = arrays["spice_currents_a"][arrays["held_out"]].ravel() * 1e6
    modes = [m for m in ("ideal", "linear_uncalibrated", "linear", "nonlinear") if f"pred_{m}" in arrays]
    fig, ax = _figure((5.5, 5))
    lo, hi = min(0.0, ref.min()), ref.max() * 1.05
    for m, marker in zip(modes, "o^sx"):
        p = arrays[f"pred_{m}"].ravel() * 1e6
        e = cal.errors[m]
        ax.scatter(ref, p, s=8, marker=marker, alpha=0.6,
                   label=f"{m}: RMS {100 * e['rel_rms']:.3g} %, max {100 * e['rel_max']:.3g} %")
        hi = max(hi, p.max() * 1.05)
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    s = cal.spec
    ax.set(xlabel=f"SPICE ({cal.provenance.get('simulator', '?')}) sense current (µA)",
           ylabel="surrogate sense current (µA)",
           title=f"{s.rows}×{s.cols} {s.cell}, wires {s.r_wire_wl_ohm:g}/{s.r_wire_bl_ohm:g} Ω (held-out tiles)")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    save_figure_atomic(fig, path)
    return Path(path)


def ir_drop_map(cal: Calibration, arrays: dict[str, np.ndarray], path: str | Path) -> Path:
    """Voltage across each cell as a fraction of its row's input, from SPICE node voltages."""
    vc = arrays["cell_voltages_v"]
    vin = arrays["cell_voltages_input_v"]
    frac = vc / np.where(vin[:, None] > 0, vin[:, None], np.nan)
    fig, ax = _figure((5.5, 4.5))
    im = ax.imshow(frac, cmap="viridis", vmin=np.nanmin(frac), vmax=1.0)
    fig.colorbar(im, ax=ax, label="V_cell / V_input")
    ax.set(xlabel="column (bit line)", ylabel="row (word line)",
           title=f"IR drop across a {cal.spec.rows}×{cal.spec.cols} {cal.spec.cell} tile (SPICE)")
    fig.tight_layout()
    save_figure_atomic(fig, path)
    return Path(path)
