"""The batched surrogate of one tile read: input voltages (batch, rows) in V → sense currents
(batch, cols) in A, for the same TileSpec the netlists are emitted from.

Modes:

* ``ideal``: ``I = V·G_cell`` (no wires; the cell as the linear mode sees it: the device, in
  series with ``g_sel`` for 1T1R).
* ``linear``: exact wire IR drop for ohmic devices; a 1T1R selector enters as its effective
  on-conductance ``g_sel`` (S) in series with each device (fitted by calibration; default the
  level-1 ``beta·(V_G − V_T)``). One transfer matrix per tile, then one matmul per batch.
* ``polynomial``: ``linear``'s wire network for each 1T1R cell's chord conductance plus the
  cell's own level-1 I–V as a cubic in its word-line voltage (:mod:`~spicecross.surrogate.cell_poly`),
  fitted on ``v_range_v``; for 0T1R equal to ``linear``.
* ``nonlinear``: the selector's level-1 I–V and its bulk junctions (identical equations to the
  SPICE model, see :func:`~spicecross.surrogate.cells.cell_currents_1t1r`) solved with
  the wire network for the whole batch at once: a modified Newton iteration whose linear part
  is the ``linear`` network factorized once. ``method="block"`` (default,
  :mod:`~spicecross.surrogate.nonlinear`): the network as dense row blocks in torch, residuals
  in float64, corrections in float32; ``method="sparse_lu"``: the former fixed point around a
  scipy SuperLU factorization with per-cell current injections (the reference the tests hold
  the block solver to). For 0T1R tiles it equals ``linear`` (VTEAM's read I–V is ohmic).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..circuit.tile import TileSpec
from .cell_poly import cell_polynomials, polynomial_read
from .cells import cell_currents_1t1r
from .mapping import effective_cell_conductance
from .modes import MODES
from .network import build_network
from .nonlinear import BlockSolver, NotConverged
from .transfer import transfer_matrices


def default_read_voltage_v(spec: TileSpec) -> float:
    """The DAC's default full-scale read voltage (V) for ``spec``'s device set."""
    from .config import AnalogConfig

    return AnalogConfig(tile=spec).read_voltage_v


class ConvergenceError(RuntimeError):
    """The nonlinear solve did not converge within its iteration limit."""


#: Solvers of the nonlinear mode (see the module docstring).
NONLINEAR_METHODS = ("block", "sparse_lu")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


@dataclass
class NonlinearStats:
    iterations: int = 0
    residual_v: float = 0.0


@dataclass
class TileSurrogate:
    """Surrogate of one tile with device conductances ``g_dev_s`` (rows, cols) in S."""

    spec: TileSpec
    g_dev_s: np.ndarray
    mode: str = "linear"
    g_sel_s: float | None = None          # calibrated effective selector conductance (linear mode)
    tol_v: float = 1e-10                  # nonlinear: node-voltage change (relative to max |v|) that ends the iteration
    max_iter: int = 200
    stats: NonlinearStats = field(default_factory=NonlinearStats)
    method: str = "block"                 # nonlinear solver, one of NONLINEAR_METHODS
    v_range_v: tuple[float, float] | None = None   # polynomial: the read range the cell I–V is fitted on
    _T: torch.Tensor | None = field(default=None, repr=False)
    _block: BlockSolver | None = field(default=None, repr=False)
    _poly: tuple | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_mode(self.mode)
        if self.method not in NONLINEAR_METHODS:
            raise ValueError(f"method must be one of {NONLINEAR_METHODS}, got {self.method!r}")
        self.g_dev_s = self.spec.check_conductances(self.g_dev_s)

    @property
    def g_cell_s(self) -> np.ndarray:
        return effective_cell_conductance(self.spec, self.g_dev_s, self.g_sel_s)

    @property
    def transfer(self) -> torch.Tensor:
        """T (cols, rows) in S of the linear mode, computed once and cached."""
        if self._T is None:
            self._T = transfer_matrices(self.spec.for_solvers(), self.g_cell_s)
        return self._T

    @property
    def fit_range_v(self) -> tuple[float, float]:
        """The ``polynomial`` mode's fit range (V): ``v_range_v``, or 0 V to the device set's
        default read voltage."""
        lo, hi = self.v_range_v if self.v_range_v is not None else (0.0, default_read_voltage_v(self.spec))
        return float(lo), float(hi)

    def polynomial_model(self) -> tuple[np.ndarray, np.ndarray]:
        """The ``polynomial`` mode's chord transfer matrix (cols, rows) in S and remainder
        coefficients (degree, rows, cols), fitted on :attr:`fit_range_v`, computed once."""
        if self._poly is None:
            chord, poly, _ = cell_polynomials(self.spec, self.g_dev_s, *self.fit_range_v)
            self._poly = (transfer_matrices(self.spec.for_solvers(), chord).numpy(), poly)
        return self._poly

    def read(self, v_in_v: np.ndarray) -> np.ndarray:
        """Sense currents (A), shape (batch, cols) or (cols,) like the input (batch, rows)/(rows,)."""
        v = self.spec.check_inputs(v_in_v)
        v2 = np.atleast_2d(v)
        if self.mode == "ideal":
            out = v2 @ self.g_cell_s
        elif self.mode == "polynomial" and self.spec.cell == "1t1r":
            model = self.polynomial_model()
            lo, hi = self.fit_range_v
            tol = 1e-6 * max(hi - lo, 1e-3)     # float32 DAC levels (0.2 V → 0.200000003 V)
            bad = v2[(v2 < lo - tol) | (v2 > hi + tol)]
            if bad.size:
                raise ValueError(f"word-line voltage {bad.flat[0]:g} V is outside the polynomial "
                                 f"mode's fit range [{lo:g}, {hi:g}] V: pass v_range_v or use "
                                 f"the nonlinear mode")
            out = polynomial_read(*model, v2)
        elif self.mode in ("linear", "polynomial") or self.spec.cell == "0t1r":
            out = (torch.as_tensor(v2) @ self.transfer.T).numpy()
        elif self.method == "block":
            out = self._read_block(v2)
        else:
            out = self._read_sparse_lu(v2)
        return out if v.ndim == 2 else out[0]

    def _read_block(self, v: np.ndarray) -> np.ndarray:
        if self._block is None:
            # A_lin's cells are the linear mode's (the calibrated g_sel if given)
            self._block = BlockSolver(self.spec, self.g_dev_s[None], self.g_cell_s[None],
                                      tol_v=self.tol_v, max_iter=self.max_iter)
        try:
            out = self._block.read(v[None])[0].numpy()
        except NotConverged:
            # strongly forward-biased junctions can defeat the block iteration's linearized
            # cells: the sparse-LU fixed point solves each cell exactly per iteration
            return self._read_sparse_lu(v)
        st = self._block.stats
        self.stats = NonlinearStats(st.iterations, st.residual_v)
        return out

    def _read_sparse_lu(self, v: np.ndarray) -> np.ndarray:
        spec = self.spec.for_solvers()
        g_lin = self.g_cell_s
        net = build_network(spec, g_lin)
        wl, bl = net.wl_index(), net.bl_index()
        x = net.node_voltages(v)
        inj = np.zeros_like(x)
        scale = max(float(np.max(np.abs(v))), abs(spec.selector.v_bulk_v), 1e-30)
        for it in range(1, self.max_iter + 1):
            a, b = x[:, wl], x[:, bl]
            # a cell's word- and bit-line currents differ by its junction currents to the bulk,
            # so each node gets its own correction to the linear cell current
            j_wl, j_bl = cell_currents_1t1r(spec, self.g_dev_s, a, b)
            lin = g_lin * (a - b)
            inj[:, wl] = -(j_wl - lin)
            inj[:, bl] = j_bl - lin
            x_new = net.node_voltages(v, inj)
            delta = float(np.max(np.abs(x_new - x)))
            x = x_new
            if delta <= self.tol_v * scale:
                self.stats = NonlinearStats(it, delta)
                return net.sense_currents(x)
        raise ConvergenceError(f"nonlinear tile solve did not converge in {self.max_iter} iterations "
                               f"(last node-voltage change {delta:.3e} V)")
