"""The bounds of read disturb that need no exact solve (bounds 1 and 2 of
:mod:`spicecross.surrogate.read_disturb_update`): which reads move no cell of any array (the
passive network), and per read and row the interval the wire network keeps every cell
voltage in, from the cell-voltage transfer matrices."""
from __future__ import annotations

import numpy as np
import torch

from ..devices.vteam import VTEAMParams

__all__ = ["inert_spans", "inert_reads", "deviation_bounds", "row_voltage_bounds",
           "rows_any_read_can_move"]


def inert_spans(hi_v: torch.Tensor, lo_v: torch.Tensor, p: VTEAMParams,
                v_bulk_v: float = 0.0) -> torch.Tensor:
    """(n,) True for reads whose largest and smallest applied voltages ``hi_v``/``lo_v`` (n,)
    in V provably move no cell (bound 1: cell voltages within [−span, span]; 1T1R: the
    selectors' bulk ``v_bulk_v`` counted as applied); compared in float64."""
    span = (hi_v.to(torch.float64).clamp(min=max(v_bulk_v, 0.0))
            - lo_v.to(torch.float64).clamp(max=min(v_bulk_v, 0.0)))
    return (span <= p.v_off_v) & (-span >= p.v_on_v)


def inert_reads(v: np.ndarray, p: VTEAMParams, v_bulk_v: float = 0.0) -> np.ndarray:
    """(n,) True for reads (n, rows) in V that provably move no cell (:func:`inert_spans` of
    each read's extremes)."""
    t = torch.from_numpy(np.ascontiguousarray(v))
    return inert_spans(t.amax(1), t.amin(1), p, v_bulk_v).numpy()


def deviation_bounds(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``P`` and ``N`` (rows, inputs) of bound 2 of cell-voltage transfer matrices ``t``
    (A, rows, cols, inputs) (the first ``inputs`` word lines driven)."""
    d = t - torch.eye(t.shape[1], t.shape[3], dtype=t.dtype)[None, :, None, :]
    return d.clamp(min=0).amax(dim=(0, 2)), (-d).clamp(min=0).amax(dim=(0, 2))


def row_voltage_bounds(t: torch.Tensor, v: torch.Tensor,
                       pos_neg: tuple[torch.Tensor, torch.Tensor] | None = None,
                       rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower and upper bounds (n, rows) in V on the cell voltages of every row of every array
    with cell-voltage transfer matrices ``t`` (A, rows, cols, inputs) under reads ``v``
    (n, inputs), the first ``inputs`` word lines (the others at 0 V) (bound 2;
    ``pos_neg`` its :func:`deviation_bounds` if known); ``rows``: only these rows' bounds
    (n, len(rows)). The update computes the same bound inside its compiled pass
    (:func:`~spicecross.surrogate.read_disturb_kernel.classify_reads`, tested against this)."""
    pos, neg = deviation_bounds(t) if pos_neg is None else pos_neg
    if rows is None:
        v_rows = torch.nn.functional.pad(v, (0, t.shape[1] - v.shape[1]))   # (n, rows)
    else:                                    # only the rows asked for; undriven ones at 0 V
        pos, neg = pos[rows], neg[rows]
        driven = rows < v.shape[1]
        if bool(driven.all()):
            v_rows = torch.index_select(v, 1, rows)
        else:
            v_rows = v.new_zeros((v.shape[0], len(rows)))
            v_rows[:, driven] = torch.index_select(v, 1, rows[driven])
    vp = v.clamp(min=0)
    hi = v_rows + vp @ pos.T
    lo = v_rows - vp @ neg.T
    if bool((v < 0).any()):                                  # bipolar reads
        vn = (-v).clamp(min=0)
        hi += vn @ neg.T
        lo -= vn @ pos.T
    return lo, hi


def rows_any_read_can_move(p: VTEAMParams, pos_neg: tuple[torch.Tensor, torch.Tensor],
                            v: torch.Tensor, rows: int) -> torch.Tensor:
    """Indices of the rows (of ``rows``) whose bound 2 for all reads ``v`` (n, inputs) at once
    (their parts' largest values) reaches a threshold; the others are skipped for every read."""
    pos, neg = pos_neg
    v_max, v_min, pad = v.amax(0), v.amin(0), (0, rows - v.shape[1])
    vp, vn = v_max.clamp(min=0), (-v_min).clamp(min=0)   # the parts' largest values
    hi = torch.nn.functional.pad(v_max, pad) + pos @ vp + neg @ vn
    lo = torch.nn.functional.pad(v_min, pad) - neg @ vp - pos @ vn
    return torch.nonzero((hi > p.v_off_v) | (lo < p.v_on_v)).flatten()
