"""The demo's MNIST step: the calibrated surrogate on the real test set (or the bundled sample),
crossbars without wires (``ideal``) and with exact wire IR drop and the selectors' I–V
(``polynomial``), beside digital."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..store import save_figure_atomic
from ..surrogate.config import AnalogConfig
from .inference import infer


#: The demo's network: 64×64 1T1R tiles, 8-bit converters, physical two-phase reads at the
#: default read voltage, exact wire IR drop, the selectors' own I–V (the polynomial mode).
DEMO_CONFIG = AnalogConfig.build(tile_rows=64, tile_cols=64, cell="1t1r", adc_bits=8,
                                 dac_bits=8, mode="polynomial")


def infer_demo(data_root: Path | None, calibration=None, limit: int | None = None,
               plot: Path | None = None, spice_check_reads: int = 8) -> dict[str, Any]:
    """Run the demo inference with the selector conductance of ``calibration`` (a
    :class:`~spicecross.calibration.Calibration` made for the demo's tile, checked); returns
    the polynomial-mode result with its SPICE check plus ``ideal_accuracy``, ``dataset`` and
    ``plot``."""
    from ..calibration.calibrate import apply_calibration

    cfg = DEMO_CONFIG if calibration is None else apply_calibration(DEMO_CONFIG, calibration)
    lin = infer("mnist", data_root, cfg, limit=limit, spice_check_reads=spice_check_reads)
    ideal = infer("mnist", data_root, cfg.with_(mode="ideal"), limit=limit)
    out = {k: lin[k] for k in ("accuracy", "digital_accuracy", "seconds", "images", "digital_seconds",
                               "read_voltage_v", "read_scheme")}
    out.update(ideal_accuracy=ideal["accuracy"], dataset=lin["data"], r_wire_ohm=cfg.r_wire_ohm,
               config=cfg.to_dict(), spice_check=lin.get("spice_check"))
    if plot is not None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        labels = ["digital", "crossbar, ideal wires", f"crossbar, {cfg.r_wire_ohm:g} Ω wires\n(exact IR drop)"]
        values = [lin["digital_accuracy"], ideal["accuracy"], lin["accuracy"]]
        fig = Figure(figsize=(6, 4))
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        bars = ax.bar(labels, values, color=["0.5", "tab:blue", "tab:orange"])
        ax.bar_label(bars, fmt="%.2f %%")
        ax.set_ylim(max(0.0, min(values) - 5), 100)
        ax.set_ylabel("MNIST accuracy (%)")
        ax.set_title(f"{lin['images']} images, 64×64 1T1R tiles, 8-bit ADC, MIV 9 V")
        fig.tight_layout()
        save_figure_atomic(fig, plot)
        out["plot"] = str(plot)
    return out
