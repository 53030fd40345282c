"""The cell-voltage transfer matrices a group of 0T1R arrays keeps across read-disturb
updates (:func:`~spicecross.surrogate.read_disturb_update.advance_arrays`): built at the
arrays' states and rebuilt, array by array, once a state of that array has moved by more than
``dw_max`` (of the state range) since its matrices were built.

Each array's matrices depend on its own conductances alone, so an array none of whose states
moved that far keeps its matrices: every array's frozen conductances stay within ``dw_max``
of its present ones whichever arrays of the group are rebuilt (the guarantee the update's
error bound rests on), and a group of G⁺ and G⁻ arrays whose cells move in one of them pays
for that one. A rebuilt array keeps the rows of its last build below the lowest row whose
conductances changed (:class:`~spicecross.surrogate.cell_transfer.SweepState`, tiles of up to
:data:`SWEEP_STATE_MAX_BYTES` per array): the first MNIST convolution's rebuilds sweep 9 of 64
rows again.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..circuit.tile import TileSpec
from .cell_transfer import SweepState, block_cell_voltage_transfer
from .dynamic import DENSE_MAX_CELLS, cell_voltage_transfer
from .read_disturb_bounds import deviation_bounds

#: Largest state (bytes) one array keeps for its next rebuild (:class:`SweepState`: 4 MB at
#: 64×64, 32 MB at 128×128, which would cost more memory than the rows it saves are worth).
SWEEP_STATE_MAX_BYTES = 8 * 2**20

__all__ = ["TransferCache"]


@dataclass
class TransferCache:
    """A group's cell-voltage transfer matrices ``t`` (A, rows, cols, inputs) and the states
    ``w_built`` (A, rows, cols) each array's matrices were built at; kept across calls of
    :func:`~spicecross.surrogate.read_disturb_update.advance_arrays`. ``t`` is a new tensor
    whenever any array's matrices change (callers key derived data by its identity)."""

    t: torch.Tensor | None = None
    w_built: torch.Tensor | None = None
    pos_neg: tuple[torch.Tensor, torch.Tensor] | None = None
    _by_row: tuple[torch.Tensor, torch.Tensor] | None = None
    _sweeps: dict | None = None         # array → its last build's SweepState (small tiles)

    def by_row(self) -> torch.Tensor:
        """``t`` per row as (rows, inputs, A·cols), contiguous: a row's cell voltages for reads
        ``v`` (m, inputs) are one product ``v @ by_row()[i]`` (made once per ``t``)."""
        if self._by_row is None or self._by_row[0] is not self.t:
            A, R, C, K = self.t.shape
            self._by_row = (self.t, self.t.permute(1, 3, 0, 2).reshape(R, K, A * C).contiguous())
        return self._by_row[1]

    def stale_arrays(self, w: torch.Tensor, n_in: int, dw_max: float) -> torch.Tensor:
        """Indices of the arrays whose matrices must be (re)built for states ``w`` (A, rows,
        cols) and reads on the first ``n_in`` word lines: all of them when there are none yet
        (or of another shape), else those with a state more than ``dw_max`` from ``w_built``."""
        if (self.t is None or self.w_built.shape != w.shape or self.t.shape[-1] != n_in):
            return torch.arange(w.shape[0])
        moved = (w - self.w_built).abs().amax(dim=(1, 2))
        return torch.nonzero(moved > dw_max).flatten()

    def update(self, spec: TileSpec, w: torch.Tensor, n_in: int, dw_max: float, wires: bool,
               conductances: Callable[[torch.Tensor], torch.Tensor]) -> int:
        """Rebuild the stale arrays' matrices (:meth:`stale_arrays`) at states ``w``, with the
        cell conductances (S) ``conductances(idx)`` of arrays ``idx`` at those states;
        ``wires=False``: ideal wires, ``V_cell = v_i``. Returns the number of arrays rebuilt."""
        stale = self.stale_arrays(w, n_in, dw_max)
        if len(stale) == 0:
            return 0
        A, R, C = w.shape
        if not wires:
            t_new = torch.eye(R, n_in, dtype=torch.float64)[None, :, None, :].expand(A, R, C, n_in)
        elif len(stale) == A:
            t_new = self._build(spec, conductances(stale), stale, n_in)
        else:
            t_new = self.t.clone()
            t_new[stale] = self._build(spec, conductances(stale), stale, n_in)
        if len(stale) == A:
            w_built = w.clone()
        else:
            w_built = self.w_built.clone()
            w_built[stale] = w[stale]
        self.t, self.w_built = t_new, w_built
        self.pos_neg = deviation_bounds(t_new)
        return len(stale)

    def _build(self, spec: TileSpec, g_s: torch.Tensor, idx: torch.Tensor, n_in: int
               ) -> torch.Tensor:
        """Transfer matrices of arrays ``idx`` at conductances ``g_s`` (len(idx), rows, cols)
        in S: array by array from its last build's :class:`SweepState` where the tiles are
        small enough to keep one (only the rows above the lowest changed row are swept
        again: bitwise a build from scratch), else all at once."""
        sp = spec.for_solvers()
        if (sp.rows * sp.cols <= DENSE_MAX_CELLS
                or SweepState.nbytes(sp.rows, sp.cols) > SWEEP_STATE_MAX_BYTES):
            return cell_voltage_transfer(spec, g_s, inputs=n_in)
        if self._sweeps is None:      # a sweep's state does not depend on the inputs driven
            self._sweeps = {}
        out = []
        for j, a in enumerate(idx.tolist()):
            t, self._sweeps[a] = block_cell_voltage_transfer(sp, g_s[j:j + 1], n_in,
                                                             self._sweeps.get(a))
            out.append(t)
        return torch.cat(out)
