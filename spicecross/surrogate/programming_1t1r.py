"""The surrogate writer of 1T1R tiles (scheme ``gate``): write pulses in the dynamic surrogate
with the selectors in the solve (:class:`~spicecross.surrogate.dynamic.DynamicTileSurrogate`
on a 1T1R tile: each gate line at its pulse, the memristor voltages from the exact nonlinear
solve), verify reads by the exact nonlinear DC read with every gate at the selector's DC
``v_gate_v`` (:func:`~spicecross.surrogate.nonlinear.read_many`, the read the SPICE writer's
``.op`` makes). The write-verify loop is :func:`spicecross.spice.programming.program_tile`;
this is its ``backend='surrogate'`` for ``spec.cell == "1t1r"``.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ..circuit.tile import TileSpec
from ..devices.vteam import VTEAMParams
from ..threads import limited_threads
from .dynamic import DynamicTileSurrogate
from .nonlinear import read_many
from .programming import WRITE_STEPPING

__all__ = ["SelectorSurrogateWriter"]


class SelectorSurrogateWriter:
    """Writes and reads one 1T1R VTEAM tile in torch; states normalised, in [0, 1]. ``sim_s``
    accumulates the seconds spent in pulses and reads."""

    name = "surrogate"

    def __init__(self, spec: TileSpec, params: VTEAMParams, *, c2c_sigma: float = 0.0,
                 seed: int | None = None) -> None:
        if spec.cell != "1t1r":
            raise ValueError(f"SelectorSurrogateWriter writes 1t1r tiles, got {spec.cell!r}")
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
        """Sense currents (cols,) in A of a read ``v_in_v`` (rows,) in V, bit lines at 0 V,
        gates at the selector's DC voltage."""
        t0 = time.perf_counter()
        with limited_threads(1):
            g = self.dyn.conductances(torch.as_tensor(np.asarray(w, dtype=np.float64))).numpy()
            i = read_many(self.spec, g[None], np.asarray(v_in_v, dtype=np.float64)[None, None],
                          dtype=torch.float64)
        self.sim_s += time.perf_counter() - t0
        return i[0, 0]
