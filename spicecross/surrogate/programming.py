"""The programming model of the dynamic surrogate: write pulses applied to a VTEAM tile by
:class:`~spicecross.surrogate.dynamic.DynamicTileSurrogate`, and verify reads by the same
exact solve. The write-verify loop is :func:`spicecross.spice.programming.program_tile`; this
is its ``backend='surrogate'``.

* 0T1R tiles (schemes ``v2``, ``v3``: the word- and bit-line voltages of
  :func:`spicecross.spice.programming.line_voltages`): exact wire-network cell voltages per
  step, the VTEAM state equation, cycle-to-cycle variability if asked for; verify reads by the
  same network solve (:func:`~spicecross.surrogate.dynamic.cell_voltages`).
* 1T1R tiles (scheme ``gate``): the selectors in each step's solve (each gate line at its
  pulse, the memristor voltages from the exact nonlinear solve); verify reads by the exact
  nonlinear DC read with every gate at the selector's DC ``v_gate_v``
  (:func:`~spicecross.surrogate.nonlinear.read_many`, the read the SPICE writer's ``.op``
  makes).
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
    """Writes and reads one VTEAM tile (0T1R or 1T1R) in torch; states normalised, in [0, 1].
    ``sim_s`` accumulates the seconds spent in pulses and reads."""

    name = "surrogate"

    def __init__(self, spec: TileSpec, params: VTEAMParams, *, c2c_sigma: float = 0.0,
                 seed: int | None = None) -> None:
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
        """Sense currents (cols,) in A of a read ``v_in_v`` (rows,) in V, bit lines at 0 V
        (1T1R: gates at the selector's DC voltage)."""
        t0 = time.perf_counter()
        with limited_threads(1):
            g = self.dyn.conductances(torch.as_tensor(np.asarray(w, dtype=np.float64)))
            if self.spec.cell == "1t1r":
                from .nonlinear import read_many

                i = read_many(self.spec, g.numpy()[None],
                              np.asarray(v_in_v, dtype=np.float64)[None, None],
                              dtype=torch.float64)[0, 0]
            else:
                _, i = cell_voltages(self.spec, g[None],
                                     torch.as_tensor(v_in_v, dtype=torch.float64)[None])
                i = i[0].numpy()
        self.sim_s += time.perf_counter() - t0
        return i
