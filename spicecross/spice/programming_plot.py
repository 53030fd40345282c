"""The write-verify figure: the histogram of the final conductance errors of the programmed
cells (fractions of the conductance range, the tolerance marked) and the map of the disturb
every cell took from pulses addressed to other cells. Agg canvas, no pyplot."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..store import save_figure_atomic
from .programming import ProgrammingResult

__all__ = ["write_verify_figure"]


def write_verify_figure(res: ProgrammingResult, path: str | Path, title: str = "") -> Path:
    """Save the figure of ``res`` as a PNG at ``path`` (atomically); returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    ax_h, ax_d = fig.subplots(1, 2)
    err = 100 * res.g_error_s[res.targeted] / res.g_range_s
    tol = 100 * res.tolerance
    lim = max(1.5 * tol, float(np.max(np.abs(err))) * 1.05)
    ax_h.hist(err, bins=np.linspace(-lim, lim, 41), color="tab:blue", alpha=0.8)
    for x in (-tol, tol):
        ax_h.axvline(x, color="k", ls="--", lw=0.8)
    inside = float(np.mean(np.abs(err) <= tol)) * 100
    ax_h.set(xlabel="final G − target (% of 1/r_on − 1/r_off)", ylabel="cells",
             title=f"{res.targeted.sum()} cells, {inside:.0f} % within ±{tol:g} %, "
                   f"{int(res.pulses.sum())} pulses")
    d = res.disturb_w
    vmax = max(float(np.max(np.abs(d))), 1e-12)
    im = ax_d.imshow(d, cmap="coolwarm", vmin=-vmax, vmax=vmax)
    fig.colorbar(im, ax=ax_d, label="state change from other cells' pulses (of the range)")
    ax_d.set(xlabel="column (bit line)", ylabel="row (word line)",
             title=f"disturb, {res.scheme} scheme ({res.backend}): max {vmax:.2g}")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    return Path(path)
