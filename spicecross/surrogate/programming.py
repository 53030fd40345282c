"""The programming model of the dynamic surrogate: write pulses of a half-select scheme (the
word- and bit-line voltages of :func:`spicecross.spice.programming.line_voltages`) applied to
a VTEAM tile by :class:`~spicecross.surrogate.dynamic.DynamicTileSurrogate` (exact wire-network
cell voltages per step, the VTEAM state equation, cycle-to-cycle variability if asked for), and
verify reads by the same exact network solve. The write-verify loop is
:func:`spicecross.spice.programming.program_tile`; this is its ``backend='surrogate'``.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ..circuit.tile import TileSpec
from ..devices.vteam import VTEAMParams
from ..threads import limited_threads
from .dynamic import DynamicTileSurrogate, cell_voltages

__all__ = ["SurrogateWriter", "WRITE_STEPPING"]

#: Time stepping of write pulses: coarser than the read-pulse defaults (a write moves the
#: selected cell by up to the whole range; Heun's steps of ≤ 2e-3 of the range keep the states
#: within 1e-3 of the SPICE transients' on 4×4–8×8 tiles, tests/test_programming.py) at a
#: quarter of the cost.
WRITE_STEPPING = {"dw_max": 2e-3, "substeps_plateau": 8, "substeps_ramp": 4}


class SurrogateWriter:
    """Writes and reads one 0T1R VTEAM tile in torch; states normalised, in [0, 1]. ``sim_s``
    accumulates the seconds spent in pulses and reads."""

    name = "surrogate"

    def __init__(self, spec: TileSpec, params: VTEAMParams, *, c2c_sigma: float = 0.0,
                 seed: int | None = None) -> None:
        if spec.cell != "0t1r":
            raise ValueError(f"SurrogateWriter programs 0t1r tiles (schemes v2, v3); a "
                             f"{spec.cell} tile's gate scheme is SelectorSurrogateWriter's "
                             f"(surrogate/programming_1t1r.py; spice.programming.make_writer "
                             f"picks it)")
        self.spec = spec
        self.dyn = DynamicTileSurrogate(spec, params, c2c_sigma=c2c_sigma, seed=seed,
                                        **WRITE_STEPPING)
        self.sim_s = 0.0

    def pulse(self, w: np.ndarray, train) -> np.ndarray:
        t0 = time.perf_counter()
        g = self.dyn.conductances(torch.as_tensor(np.asarray(w, dtype=np.float64))).numpy()
        out = self.dyn.run_pulses(g, train).w_final
        self.sim_s += time.perf_counter() - t0
        return out

    def read(self, w: np.ndarray, v_in_v: np.ndarray) -> np.ndarray:
        """Sense currents (cols,) in A of a read ``v_in_v`` (rows,) in V, bit lines at 0 V."""
        t0 = time.perf_counter()
        with limited_threads(1):
            g = self.dyn.conductances(torch.as_tensor(np.asarray(w, dtype=np.float64)))
            _, i = cell_voltages(self.spec, g[None], torch.as_tensor(v_in_v, dtype=torch.float64)[None])
        self.sim_s += time.perf_counter() - t0
        return i[0].numpy()
