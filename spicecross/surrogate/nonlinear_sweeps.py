"""The linear passes of the line solver's compiled kernel
(:mod:`~spicecross.surrogate.nonlinear_kernel`) after its first, residual pass: they apply a
fixed approximate inverse of ``A_lin`` (the nodal matrix with the linear mode's cells, S) to the
KCL residual (A), so they decide only the convergence rate, never the fixed point. Word-line
solves (:func:`word4`, four lines interleaved), the bit lines' back substitution with the
restriction of the residual the block Gauss–Seidel sweep leaves (:func:`backward`), and the
Galerkin correction on the coarse space (:func:`coarse_step`, :func:`add_coarse`), and the
word lines' pivots when a vector's cells are linearized (:func:`word_pivots4`).
"""
from __future__ import annotations

import numba as nb
import numpy as np

_JIT = dict(cache=True, error_model="numpy")
#: for the preconditioner and reductions only: their rounding order does not move the fixed point
_FAST = dict(_JIT, fastmath={"reassoc", "contract", "nnan", "nsz"})


@nb.njit(inline="always", **_FAST)
def word4(x, idw, i0, g_w):
    """Word lines ``i0`` … ``i0 + 3`` (clamped to the last) solved in place for the residuals
    ``x`` (4, C) (A → V): forward elimination and back substitution with the reciprocal pivots
    ``idw`` (R, C) in Ω, the four lines interleaved (each step waits on the one before)."""
    R, C = idw.shape
    i1, i2, i3 = min(i0 + 1, R - 1), min(i0 + 2, R - 1), min(i0 + 3, R - 1)
    x0, x1, x2, x3 = x[0], x[1], x[2], x[3]
    w0, w1, w2, w3 = idw[i0], idw[i1], idw[i2], idw[i3]
    p0, p1, p2, p3 = x0[0] * w0[0], x1[0] * w1[0], x2[0] * w2[0], x3[0] * w3[0]
    x0[0], x1[0], x2[0], x3[0] = p0, p1, p2, p3
    for j in range(1, C):
        p0 = (x0[j] + g_w * p0) * w0[j]
        p1 = (x1[j] + g_w * p1) * w1[j]
        p2 = (x2[j] + g_w * p2) * w2[j]
        p3 = (x3[j] + g_w * p3) * w3[j]
        x0[j], x1[j], x2[j], x3[j] = p0, p1, p2, p3
    for j in range(C - 2, -1, -1):
        p0 = x0[j] + g_w * w0[j] * p0
        p1 = x1[j] + g_w * w1[j] * p1
        p2 = x2[j] + g_w * w2[j] * p2
        p3 = x3[j] + g_w * w3[j] * p3
        x0[j], x1[j], x2[j], x3[j] = p0, p1, p2, p3


@nb.njit(inline="always", **_FAST)
def word_pivots4(ga, degw, idw, i0, g_w):
    """Reciprocal pivots (Ω) of word lines ``i0`` … ``i0 + 3`` (clamped) into ``idw``: their
    cells' ``ga`` (R, C) plus the wires' degrees ``degw`` (C,) on the diagonal (S), ``−g_w``
    beside it, eliminated from column 0 on, the four lines interleaved."""
    R, C = ga.shape
    i1, i2, i3 = min(i0 + 1, R - 1), min(i0 + 2, R - 1), min(i0 + 3, R - 1)
    gw2 = g_w * g_w
    p0, p1 = 1.0 / (ga[i0, 0] + degw[0]), 1.0 / (ga[i1, 0] + degw[0])
    p2, p3 = 1.0 / (ga[i2, 0] + degw[0]), 1.0 / (ga[i3, 0] + degw[0])
    idw[i0, 0], idw[i1, 0], idw[i2, 0], idw[i3, 0] = p0, p1, p2, p3
    for j in range(1, C):
        d = degw[j]
        p0 = 1.0 / ((ga[i0, j] + d) - gw2 * p0)
        p1 = 1.0 / ((ga[i1, j] + d) - gw2 * p1)
        p2 = 1.0 / ((ga[i2, j] + d) - gw2 * p2)
        p3 = 1.0 / ((ga[i3, j] + d) - gw2 * p3)
        idw[i0, j], idw[i1, j], idw[i2, j], idw[i3, j] = p0, p1, p2, p3


@nb.njit(**_FAST)
def backward(b, yb, gb, idb, g_b, pr, pcT, s, below):
    """The sweep's second half: the bit lines' back substitution, bottom up (``yb`` holds the
    forward elimination, ends as δb), ``b += δb``; the residual ``Gb·δb`` this leaves on the
    word-line nodes restricted into ``s`` (K, A). ``below`` (C,): scratch."""
    R, C = b.shape
    kr, kc = pr.shape[1], pcT.shape[0]
    q0, q1, q2 = pcT[0], pcT[min(1, kc - 1)], pcT[kc - 1]
    s[:] = 0.0
    below[:] = 0.0
    for i in range(R - 1, -1, -1):
        t0 = t1 = t2 = 0.0
        for j in range(C):
            d = yb[i, j] + g_b * idb[i, j] * below[j]
            below[j] = d
            yb[i, j] = d
            b[i, j] += d
            rr = gb[i, j] * d
            t0 += q0[j] * rr
            t1 += q1[j] * rr
            t2 += q2[j] * rr
        for p in range(kr):
            s[p * kc] += pr[i, p] * t0
            if kc > 1:
                s[p * kc + 1] += pr[i, p] * t1
            if kc > 2:
                s[p * kc + 2] += pr[i, p] * t2


@nb.njit(**_FAST)
def coarse_step(m, s, y):
    """y = m·s (2K, V) with ``m`` (2K, K) in Ω. Returns the sum of ``y``, which is not finite if
    any node voltage has become so (the coarse step couples every node)."""
    tot = 0.0
    for k in range(m.shape[0]):
        acc = 0.0
        for pq in range(m.shape[1]):
            acc += m[k, pq] * s[pq]
        y[k] = acc
        tot += acc
    return tot


@nb.njit(**_FAST)
def add_coarse(a, b, y, pr, pcT, da, db, big):
    """a += Z_a·y, b += Z_b·y (V): the coarse correction on word- and bit-line nodes. Returns
    the largest movement of a node in this iteration, |δa + Z_a·y| or |δb + Z_b·y| (V), with
    the sweep's corrections ``da``, ``db``. ``big`` (2, C): scratch, the maxima per column
    written to the other row each time (a maximum stored back where it was read compiles to
    masked stores, slow on AMD cores)."""
    R, C = a.shape
    kr, kc = pr.shape[1], pcT.shape[0]
    K = kr * kc
    q1, q2 = min(1, kc - 1), kc - 1
    big[0] = 0.0
    cur = 0
    for half in range(2):
        x, dx = (a, da) if half == 0 else (b, db)
        for i in range(R):
            c0 = c1 = c2 = 0.0
            for p in range(kr):
                c0 += y[half * K + p * kc] * pr[i, p]
                c1 += y[half * K + p * kc + q1] * pr[i, p] if kc > 1 else 0.0
                c2 += y[half * K + p * kc + q2] * pr[i, p] if kc > 2 else 0.0
            src, dst = big[cur], big[1 - cur]
            for j in range(C):
                c = c0 * pcT[0, j] + c1 * pcT[q1, j] + c2 * pcT[q2, j]
                x[i, j] += c
                ad, m = abs(dx[i, j] + c), src[j]
                dst[j] = ad if ad > m else m
            cur = 1 - cur
    mx = 0.0
    for j in range(C):
        mx = max(mx, big[cur, j])
    return mx
