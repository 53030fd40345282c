"""The compiled inner loops of read disturb in 0T1R arrays (numba, without the GIL).

:func:`classify_reads`: per read and row, bound 2 of
:mod:`~spicecross.surrogate.read_disturb_update` and what it decides (skipped, surely
switching, solved cell by cell), in one pass instead of a dozen tensor passes over (reads ×
rows) per segment.

:func:`excess_sums`: the dose where only OFF motion is possible
and VTEAM's OFF rate is linear above ``v_off`` (``alpha_off = 1``, rectangular reads, see
:mod:`~spicecross.surrogate.read_disturb_update`): per row, ``Σ_m max(V_m − v_off, 0)`` over
the reads ``m`` the row bounds left, every cell voltage ``V_m = v_m · T_row`` made, clipped and
summed in one pass over the row's cells (numba, without the GIL: the caller splits rows among
threads).

The torch form it replaces (a product per block of reads, then a clamp and a sum) made three
passes over each block and, for the first MNIST convolution's nine inputs, a matrix product
too thin to run at speed; this reads each read's inputs once, skips the zero ones (ReLU
outputs) and keeps the row's sums in registers and L1. Only the cells a row marks as movable are
made: a cell pinned at the OFF bound (state 1) cannot move further OFF, so its dose would be
clipped away (the first MNIST convolution's arrays hold 98 % of their cells there: every unused
column and the weaker cell of every differential pair).
"""
from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["classify_reads", "compile_kernel", "excess_sums"]

_JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})


@nb.njit(**_JIT)
def _excess_rows(v, by_row, rows, live, movable, v_th, out):
    """``out[j, c] = Σ_m max(v[m] @ by_row[rows[j]][:, c] − v_th, 0)`` over the reads ``m``
    with ``live[j, m]``, for the cells ``c`` with ``movable[j, c]`` (the others left 0); ``v``
    (n, K) V, ``by_row`` (R, K, cells) V/V, ``rows`` (J,), ``live`` (J, n), ``movable``
    (J, cells), ``out`` (J, cells) V. The movable cells' columns are gathered per row, so
    the inner loops run over those alone."""
    n, k_in = v.shape
    cells = by_row.shape[2]
    volts = np.empty(cells)
    sums = np.empty(cells)
    idx = np.empty(cells, np.int64)
    t = np.empty((k_in, cells))
    for j in range(rows.shape[0]):
        nc = 0
        for c in range(cells):
            if movable[j, c]:
                idx[nc] = c
                nc += 1
        if nc == 0:
            continue
        src = by_row[rows[j]]
        for k in range(k_in):
            for q in range(nc):
                t[k, q] = src[k, idx[q]]
        for q in range(nc):
            sums[q] = 0.0
        for m in range(n):
            if not live[j, m]:
                continue
            for q in range(nc):
                volts[q] = -v_th
            for k in range(k_in):
                x = v[m, k]
                if x != 0.0:
                    for q in range(nc):
                        volts[q] += x * t[k, q]
            for q in range(nc):
                if volts[q] > 0.0:
                    sums[q] += volts[q]
        acc = out[j]
        for q in range(nc):
            acc[idx[q]] += sums[q]


def excess_sums(v: np.ndarray, by_row: np.ndarray, rows: np.ndarray, live: np.ndarray,
                v_th_v: float, movable: np.ndarray | None = None) -> np.ndarray:
    """(len(rows), cells) in V: per row ``rows[j]`` of the cell-voltage transfer matrices laid
    out per row ``by_row`` (R, inputs, cells), the sum over the reads ``v`` (n, inputs) in V
    marked in ``live[j]`` (len(rows), n) of every cell's ``max(V − v_th_v, 0)``; only for the
    cells marked in ``movable`` (len(rows), cells) if given (0 for the others)."""
    out = np.zeros((len(rows), by_row.shape[2]))
    if movable is None:
        movable = np.ones(out.shape, dtype=np.bool_)
    _excess_rows(np.ascontiguousarray(v, dtype=np.float64),
                 np.ascontiguousarray(by_row, dtype=np.float64),
                 np.ascontiguousarray(rows, dtype=np.int64),
                 np.ascontiguousarray(live, dtype=np.bool_),
                 np.ascontiguousarray(movable, dtype=np.bool_), float(v_th_v), out)
    return out


@nb.njit(**_JIT)
def _classify(v, rows, pos, neg, bipolar, v_off, v_on, aggregate, live, sums, n_sure, wants,
              counts):
    """Per read ``m`` (``v`` (n, K) V, on the first K word lines) and row ``rows[j]``: bound 2,
    ``hi = v_i + P·v⁺ + N·v⁻``, ``lo = v_i − N·v⁺ − P·v⁻`` (``pos``, ``neg`` (J, K) the rows'
    P and N; the v⁻ terms only if ``bipolar``); then skipped (within [v_on, v_off]), surely
    switching (``lo > v_off`` when ``aggregate``: counted in ``n_sure[j]``, ``v[m]`` added to
    ``sums[j]``), else solved cell by cell (``live[j, m]``; ``wants[j]``: any such read above
    v_off, below v_on). ``counts``: skipped, aggregated, solved."""
    n, k_in = v.shape
    J = rows.shape[0]
    vp = np.empty(k_in)
    vn = np.empty(k_in)
    for m in range(n):
        for k in range(k_in):
            x = v[m, k]
            vp[k] = x if x > 0.0 else 0.0
            vn[k] = -x if x < 0.0 else 0.0
        for j in range(J):
            i = rows[j]
            vi = v[m, i] if i < k_in else 0.0
            up_p = 0.0
            dn_p = 0.0
            for k in range(k_in):
                up_p += vp[k] * pos[j, k]
                dn_p += vp[k] * neg[j, k]
            h = vi + up_p
            d = vi - dn_p
            if bipolar:
                up_n = 0.0
                dn_n = 0.0
                for k in range(k_in):
                    up_n += vn[k] * neg[j, k]
                    dn_n += vn[k] * pos[j, k]
                h += up_n
                d -= dn_n
            up, down = h > v_off, d < v_on
            if not (up or down):
                counts[0] += 1
            elif aggregate and d > v_off:
                counts[1] += 1
                n_sure[j] += 1
                for k in range(k_in):
                    sums[j, k] += v[m, k]
            else:
                counts[2] += 1
                live[j, m] = True
                wants[j, 0] |= up
                wants[j, 1] |= down


def classify_reads(v: np.ndarray, rows: np.ndarray, pos: np.ndarray, neg: np.ndarray,
                   v_off_v: float, v_on_v: float, aggregate: bool):
    """Bound 2 of :mod:`~spicecross.surrogate.read_disturb_update` and its decisions in one
    pass, for reads ``v`` (n, K) in V on the first K word lines and the rows ``rows`` (J,)
    with deviation bounds ``pos``, ``neg`` (rows, K) V/V
    (:func:`~spicecross.surrogate.read_disturb_bounds.deviation_bounds`; the same bound as
    :func:`~spicecross.surrogate.read_disturb_bounds.row_voltage_bounds`): ``live`` (J, n) the
    reads each row solves cell by cell; ``sums`` (J, K) V and ``n_sure`` (J,) the sum and
    number of the reads surely switching it (``lo > v_off``; only when ``aggregate``, else
    solved); ``wants`` (J, 2) any solved read above v_off, below v_on; ``counts`` (skipped,
    aggregated, solved)."""
    v = np.ascontiguousarray(v, dtype=np.float64)
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    n, J = len(v), len(rows)
    live = np.zeros((J, n), dtype=np.bool_)
    sums = np.zeros((J, v.shape[1]))
    n_sure = np.zeros(J, dtype=np.int64)
    wants = np.zeros((J, 2), dtype=np.bool_)
    counts = np.zeros(3, dtype=np.int64)
    _classify(v, rows, np.ascontiguousarray(pos[rows], dtype=np.float64),
              np.ascontiguousarray(neg[rows], dtype=np.float64), bool((v < 0).any()),
              float(v_off_v), float(v_on_v), bool(aggregate), live, sums, n_sure, wants, counts)
    return live, sums, n_sure, wants, counts


def compile_kernel() -> bool:
    """Compile (or load from numba's cache beside this module) the kernels once, on tiny cases
    checked against numpy and the torch bounds
    (:func:`~spicecross.surrogate.read_disturb_bounds.row_voltage_bounds`); True if they
    agree."""
    import torch

    from .read_disturb_bounds import row_voltage_bounds

    rng = np.random.default_rng(0)
    v = rng.uniform(0.0, 1.0, (7, 3))
    v[2, 1] = 0.0
    t = rng.uniform(0.0, 0.5, (4, 3, 5))
    rows, live = np.array([1, 3]), rng.random((2, 7)) < 0.7
    movable = rng.random((2, 5)) < 0.6
    got = excess_sums(v, t, rows, live, 0.3, movable)
    want = np.stack([np.maximum(v[live[j]] @ t[r] - 0.3, 0.0).sum(0)
                     for j, r in enumerate(rows)]) * movable
    pos, neg = rng.uniform(0.0, 0.1, (4, 3)), rng.uniform(0.0, 0.1, (4, 3))
    bounds_of = lambda reads: (x.numpy() for x in row_voltage_bounds(    # noqa: E731
        torch.zeros(1, 4, 1, 3), torch.from_numpy(reads),
        (torch.from_numpy(pos), torch.from_numpy(neg)), torch.from_numpy(rows)))
    for reads in (v, v - 0.3):                          # unipolar, then bipolar reads
        lo, hi = bounds_of(reads)                                      # row 3 is not driven
        live_c, sums, n_sure, wants, counts = classify_reads(reads, rows, pos, neg, 0.5, -0.5,
                                                             True)
        sure = lo > 0.5
        solved = ((hi > 0.5) | (lo < -0.5)) & ~sure
        if not (np.array_equal(live_c, solved.T) and np.array_equal(n_sure, sure.sum(0))
                and np.allclose(sums, sure.T.astype(float) @ reads, rtol=1e-14, atol=0)
                and counts.sum() == lo.size):
            return False
    return bool(np.allclose(got, want, rtol=1e-12, atol=1e-15))
