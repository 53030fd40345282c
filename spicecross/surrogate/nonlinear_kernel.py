"""The compiled kernel of the line solver (:mod:`~spicecross.surrogate.nonlinear_lines`): the
whole nonlinear iteration of 1T1R tile reads in numba, one input vector after the other (its
working arrays stay in the core's L2 cache on a 64×64 tile), every inner loop along a row's
columns (SIMD), without the GIL (the caller runs ranges of vectors in threads; no numba
threading layer, whose OpenMP would fight torch's).

One iteration, for word- and bit-line node voltages ``a``, ``b`` (V), a pass per step:

1. every cell's currents in closed form (the selector in triode, lambda 0, the junction
   currents ``J`` (A) of the last iteration: the root of
   :meth:`~spicecross.surrogate.nonlinear.BlockSolver._cells_triode`'s quadratic) and the KCL
   residual (A) of every word- and bit-line node;
2. every word line solved for its correction with ``A_lin``'s tridiagonal row block (pivots
   factored once per tile: no division here), four lines interleaved;
3. the bit-line residuals updated by the cells' linear coupling ``G_lin·δa``, every bit line
   solved (forward elimination, back substitution); the residual this block Gauss–Seidel sweep
   leaves, ``G_lin·δb`` on the word-line nodes, restricted to the coarse space (products of
   Legendre polynomials of degree ≤ 2 in row and column position, on word- and on bit-line
   nodes);
4. the coarse correction ``Z·(Zᵀ·A_lin·Z)⁻¹·Zᵀ·r`` added to ``a`` and ``b``.

Only step 1's residual decides the fixed point: the level-1 equations of
:mod:`~spicecross.surrogate.cells`, evaluated with fused multiply-adds and reassociation
allowed (their rounding differs from torch's at the 1e-16 level; the junction exponential
:func:`exp_f64` is within one ulp of libm's). Steps 2–4 apply a fixed linear operator
``≈ A_lin⁻¹`` to it, so they decide only the convergence rate. The stopping rule and the
junction freeze are the block solver's (the node movement is each node's whole change in an
iteration), the rate estimate the larger of the last two. Status per vector: :data:`SOLVED`;
:data:`OUTSIDE_REGIME` (a cell not in triode where last evaluated, a drain junction forward
biased past the lag limit, a non-finite value); :data:`NOT_CONVERGED` within ``max_iter``:
the caller re-solves those with the general solver.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np
from numba.core import types
from numba.extending import intrinsic

#: The simulators' conductance across every bulk junction (S), as :data:`cells.SPICE_GMIN_S`.
GMIN_S = 1e-12
EXP_ARG_MAX = 709.0
SOLVED, OUTSIDE_REGIME, NOT_CONVERGED = 0, 1, 2
_JIT = dict(cache=True, error_model="numpy")
#: for the preconditioner and reductions only: their rounding order does not move the fixed point
_FAST = dict(_JIT, fastmath={"reassoc", "contract", "nnan", "nsz"})


@intrinsic
def _f64_bits(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int64))
    return types.int64(types.float64), codegen


@intrinsic
def _bits_f64(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))
    return types.float64(types.int64), codegen


_MAGIC = 6755399441055744.0                 # 1.5·2⁵²: adding it rounds to an integer
_LN2_HI, _LN2_LO = 0.6931471803691238, 1.9082149292705877e-10


@nb.njit(inline="always", **_JIT)
def exp_f64(z):
    """e^z for −708 ≤ z ≤ 709 within one ulp (2^n·e^f, |f| ≤ ln2/2, Taylor to degree 12), in a
    form the compiler vectorizes (libm's exp it does not)."""
    t = z * 1.4426950408889634 + _MAGIC
    n = t - _MAGIC
    f = (z - n * _LN2_HI) - n * _LN2_LO
    p = 1.0 + f * (1.0 + f * (1 / 2 + f * (1 / 6 + f * (1 / 24 + f * (1 / 120 + f * (
        1 / 720 + f * (1 / 5040 + f * (1 / 40320 + f * (1 / 362880 + f * (
            1 / 3628800 + f * (1 / 39916800 + f * (1 / 479001600))))))))))))
    return p * _bits_f64((_f64_bits(t) - _f64_bits(_MAGIC) + 1023) << 52)


@nb.njit(inline="always", **_JIT)
def junction_a(x, is_a, vt):
    """Bulk-junction current (A) at bulk-to-terminal voltage ``x`` (V): cells.junction_current."""
    z = x / vt
    z = z if z < EXP_ARG_MAX else EXP_ARG_MAX
    z = z if z > -3.0 else -3.0
    return is_a * (exp_f64(z) - 1.0) + GMIN_S * x if x > -3.0 * vt else GMIN_S * x - is_a


# Per-vector and per-tile arrays are (R, C); loops run along a row's columns and touch few
# arrays; maxima are kept per column (a select per element vectorizes, a running maximum over a
# loop does not).

@nb.njit(**_FAST)
def _residuals(a, b, u, jbd, jsb, gd, vin, vg, vbl, wires, cell, rw, rb):
    """KCL residuals (A, into the nodes) of every word- and bit-line node into ``rw``, ``rb``,
    the cells in closed form with the last iteration's junction currents ``jbd``, ``jsb``;
    u = m − b (V) into ``u``. Returns how many on-cells the closed form does not hold for (not
    in triode, V_ov ≤ max(u, 0), or u not finite)."""
    R, C = a.shape
    g_in, g_w, g_b, g_out = wires[0], wires[1], wires[2], wires[3]
    beta, vto = cell[0], cell[1]
    bad = 0
    for i in range(R):
        c_up = g_b if i > 0 else 0.0
        c_dn = g_b if i + 1 < R else 0.0
        c_s = g_out if i + 1 == R else 0.0
        iu, idn = max(i - 1, 0), min(i + 1, R - 1)
        vgl = vg[i] - vto
        for j in range(C):
            g = gd[i, j]
            ai = a[i, j]
            bi = b[i, j]
            jd = jbd[i, j]
            vov = vgl - bi
            p = g + beta * vov
            q = g * (ai - bi) + jd
            uu = 2.0 * q / (p + math.sqrt(p * p - 2.0 * beta * q))
            u[i, j] = uu
            tri = vov > (uu if uu > 0.0 else 0.0)
            bad += 1 if (g > 0.0 and not tri) else 0
            jw = g * ((bi + uu) - ai) if g > 0.0 else 0.0         # = −(current into the cell)
            rw[i, j] = jw
            rb[i, j] = ((((jd + jsb[i, j]) - jw) if g > 0.0 else 0.0)
                        + c_up * (b[iu, j] - bi) + c_dn * (b[idn, j] - bi) + c_s * (vbl[j] - bi))
        for j in range(1, C - 1):
            rw[i, j] += g_w * ((a[i, j - 1] - a[i, j]) + (a[i, j + 1] - a[i, j]))
        rw[i, 0] += g_in * (vin[i] - a[i, 0])
        if C > 1:
            rw[i, 0] += g_w * (a[i, 1] - a[i, 0])
            rw[i, C - 1] += g_w * (a[i, C - 2] - a[i, C - 1])
    return bad


@nb.njit(**_FAST)
def _junction_update(b, u, gd, jbd, jsb, cell, hot):
    """The junction currents (A) at series nodes b + u and bit-line nodes b (V) into ``jbd``,
    ``jsb`` (for the next iteration); returns the largest bulk-to-terminal voltage (V) of an
    on-cell, −1e300 if none. ``hot`` (C,): scratch."""
    R, C = b.shape
    vbk, is_a, vt = cell[2], cell[3], cell[4]
    hot[:] = -1e300
    for i in range(R):
        for j in range(C):
            on = gd[i, j] > 0.0
            x_bd, x_sb = vbk - (b[i, j] + u[i, j]), vbk - b[i, j]
            jv = junction_a(x_bd, is_a, vt)
            jbd[i, j] = jv if on else 0.0
            jv = junction_a(x_sb, is_a, vt)
            jsb[i, j] = jv if on else 0.0
            x = x_bd if x_bd > x_sb else x_sb
            x = x if on else -1e300
            h = hot[j]
            hot[j] = x if x > h else h
    return hot.max()


@nb.njit(**_FAST)
def _word_lines(rw, idw, g_w):
    """Every word line solved in place for its residuals ``rw`` (A → V): forward elimination
    and back substitution with the reciprocal pivots ``idw`` (Ω), four lines interleaved in
    registers (each step waits on the one before); a last block short of four repeats a line."""
    R, C = rw.shape
    for i0 in range(0, R, 4):
        i1, i2, i3 = min(i0 + 1, R - 1), min(i0 + 2, R - 1), min(i0 + 3, R - 1)
        p0, p1 = rw[i0, 0] * idw[i0, 0], rw[i1, 0] * idw[i1, 0]
        p2, p3 = rw[i2, 0] * idw[i2, 0], rw[i3, 0] * idw[i3, 0]
        rw[i0, 0], rw[i1, 0], rw[i2, 0], rw[i3, 0] = p0, p1, p2, p3
        for j in range(1, C):
            p0 = (rw[i0, j] + g_w * p0) * idw[i0, j]
            p1 = (rw[i1, j] + g_w * p1) * idw[i1, j]
            p2 = (rw[i2, j] + g_w * p2) * idw[i2, j]
            p3 = (rw[i3, j] + g_w * p3) * idw[i3, j]
            rw[i0, j], rw[i1, j], rw[i2, j], rw[i3, j] = p0, p1, p2, p3
        for j in range(C - 2, -1, -1):
            p0 = rw[i0, j] + g_w * idw[i0, j] * p0
            p1 = rw[i1, j] + g_w * idw[i1, j] * p1
            p2 = rw[i2, j] + g_w * idw[i2, j] * p2
            p3 = rw[i3, j] + g_w * idw[i3, j] * p3
            rw[i0, j], rw[i1, j], rw[i2, j], rw[i3, j] = p0, p1, p2, p3


@nb.njit(**_FAST)
def _bit_lines(a, b, da, rb, yb, gl, idb, g_b, pr, pcT, s, big, below):
    """``a += δa``; every bit line solved for its residuals ``rb`` plus the cells' coupling
    ``G_lin·δa`` (forward elimination in ``yb``, back substitution: ``yb`` ends as δb),
    ``b += δb``; the residual ``G_lin·δb`` this leaves on the word-line nodes restricted into
    ``s`` (K, A). ``big``, ``below`` (C,): scratch."""
    R, C = a.shape
    kr, kc = pr.shape[1], pcT.shape[0]
    p0, p1, p2 = pcT[0], pcT[min(1, kc - 1)], pcT[kc - 1]
    for i in range(R):
        c_up = g_b if i > 0 else 0.0
        iu = max(i - 1, 0)
        for j in range(C):
            d = da[i, j]
            a[i, j] += d
            yb[i, j] = (rb[i, j] + gl[i, j] * d + c_up * yb[iu, j]) * idb[i, j]
    s[:] = 0.0
    below[:] = 0.0
    for i in range(R - 1, -1, -1):
        for j in range(C):
            d = yb[i, j] + g_b * idb[i, j] * below[j]
            below[j] = d
            yb[i, j] = d
            b[i, j] += d
        t0 = t1 = t2 = 0.0
        for j in range(C):
            r = gl[i, j] * below[j]
            t0 += p0[j] * r
            t1 += p1[j] * r
            t2 += p2[j] * r
        for p in range(kr):
            s[p * kc] += pr[i, p] * t0
            if kc > 1:
                s[p * kc + 1] += pr[i, p] * t1
            if kc > 2:
                s[p * kc + 2] += pr[i, p] * t2


@nb.njit(**_FAST)
def _add_coarse(a, b, y, pr, pcT, da, db, big):
    """a += Z_a·y, b += Z_b·y (V): the coarse correction on word- and bit-line nodes. Returns
    the largest movement of a node in this iteration, |δa + Z_a·y| or |δb + Z_b·y| (V), with
    the sweep's corrections ``da``, ``db``. ``big`` (C,): scratch."""
    R, C = a.shape
    kr, kc = pr.shape[1], pcT.shape[0]
    K = kr * kc
    q1, q2 = min(1, kc - 1), kc - 1
    big[:] = 0.0
    for half in range(2):
        x, dx = (a, da) if half == 0 else (b, db)
        for i in range(R):
            c0 = c1 = c2 = 0.0
            for p in range(kr):
                c0 += y[half * K + p * kc] * pr[i, p]
                c1 += y[half * K + p * kc + q1] * pr[i, p] if kc > 1 else 0.0
                c2 += y[half * K + p * kc + q2] * pr[i, p] if kc > 2 else 0.0
            for j in range(C):
                c = c0 * pcT[0, j] + c1 * pcT[q1, j] + c2 * pcT[q2, j]
                x[i, j] += c
                ad, m = abs(dx[i, j] + c), big[j]
                big[j] = ad if ad > m else m
    return big.max()


@nb.njit(**_FAST)
def _coarse(s, ac_inv, y):
    """Step 3's coefficients y = (Zᵀ·A_lin·Z)⁻¹[:, :K]·s (2K, V). Returns their sum, which is
    not finite if any node voltage has become so (the coarse step couples every node)."""
    K = ac_inv.shape[1]
    tot = 0.0
    for k in range(2 * K):
        acc = 0.0
        for pq in range(K):
            acc += ac_inv[k, pq] * s[pq]
        y[k] = acc
        tot += acc
    return tot


@nb.njit(**_JIT)
def _series_u(a, b, gd, vg, jbd, u, cell):
    """u = m − b (V) of every cell in closed form at ``a``, ``b`` (0 for open cells)."""
    R, C = a.shape
    beta, vto = cell[0], cell[1]
    for i in range(R):
        vgl = vg[i] - vto
        for j in range(C):
            g = gd[i, j]
            p = g + beta * (vgl - b[i, j])
            q = g * (a[i, j] - b[i, j]) + jbd[i, j]
            uu = 2.0 * q / (p + math.sqrt(p * p - 2.0 * beta * q))
            u[i, j] = uu if g > 0.0 else 0.0


@nb.njit(**_JIT)
def _solve_one(k, t, warm, slot, v, vg, vbl, sa, sb, sm, oa, ob, om, i_out, g_dev, g_lin, g_min,
               inv_dw, inv_db, ac_inv, pr, pcT, wires, cell, ctrl, status, iters, moves, work):
    """Item ``k`` (a vector of tile ``t``) in the scratch arrays ``work`` (8, R, C): see
    :func:`solve_items`."""
    R, C = g_dev.shape[1], g_dev.shape[2]
    K = ac_inv.shape[2]
    tol_rel, max_iter, jfreeze, lag_max = ctrl[0], int(ctrl[1]), ctrl[2], ctrl[3]
    vbk, is_a, vt = cell[2], cell[3], cell[4]
    g_w, g_b, g_out = wires[1], wires[2], wires[3]
    a, b, u, yb, jbd, jsb, rw, rb = (work[0], work[1], work[2], work[3], work[4], work[5],
                                     work[6], work[7])
    yb[:] = 0.0
    vin, vgl, vbll = v[k], vg[k], vbl[k]
    gd, gl, idw, idb = g_dev[t], g_lin[t], inv_dw[t], inv_db[t]
    scale = max(abs(vbk), 1e-30, np.abs(vin).max(), np.abs(vbll).max())
    tol = tol_rel * scale
    jtol = jfreeze * tol * g_min[t]
    s, y, big, scratch = np.zeros(K), np.zeros(2 * K), np.empty(C), np.empty(C)
    if warm:
        a[:] = sa[k]
        b[:] = sb[k]
        u[:] = sm[k] - b                    # the start's series nodes as u = m − b
        hot = _junction_update(b, u, gd, jbd, jsb, cell, scratch)
    else:                       # every node at 0 V: both junctions at the bulk voltage
        a[:] = 0.0
        b[:] = 0.0
        j0 = junction_a(vbk, is_a, vt)
        for i in range(R):
            for j in range(C):
                jbd[i, j] = jsb[i, j] = j0 if gd[i, j] > 0.0 else 0.0
        hot = vbk
    frozen = done = False
    ok = True
    bad = 0
    prev = delta = scale
    rho_last = 1.0
    it = 0
    while it < max_iter and not done:
        if hot > lag_max:       # a forward-biased drain junction: not lagged (general solver)
            ok = False
            break
        g_j = is_a / vt * math.exp(min(hot / vt, EXP_ARG_MAX)) + GMIN_S if hot > -3.0 * vt else GMIN_S
        it += 1
        bad = _residuals(a, b, u, jbd, jsb, gd, vin, vgl, vbll, wires, cell, rw, rb)
        if not frozen and it > 1:   # the junctions at this iteration's start, for the next
            hot = _junction_update(b, u, gd, jbd, jsb, cell, scratch)
        _word_lines(rw, idw, g_w)
        _bit_lines(a, b, rw, rb, yb, gl, idb, g_b, pr, pcT, s, big, scratch)
        chk = _coarse(s, ac_inv[t], y)
        delta = _add_coarse(a, b, y, pr, pcT, rw, yb, big)
        if not (np.isfinite(delta) and np.isfinite(chk)):
            ok = False
            break
        # the junction currents just computed are kept once the nodes move too little to
        # change them by the tolerance (BlockSolver's rule)
        frozen = frozen or 2.0 * delta * g_j <= jtol
        # BlockSolver's rule (at contraction rho, delta·rho/(1 − rho) is left to move) with the
        # larger of the last two rates: this iteration's rate varies more between iterations
        rate = delta / prev if prev > 0 else 1.0
        rho, rho_last, prev = max(rate, rho_last), rate, delta
        done = delta <= tol or (it > 2 and rho < 0.5 and delta * rho / (1.0 - rho) <= tol)
    # the closed form held where the cells were last evaluated (BlockSolver's check)
    ok = ok and bad == 0
    iters[k] = it
    moves[k] = delta
    status[k] = SOLVED if done and ok else (OUTSIDE_REGIME if not ok else NOT_CONVERGED)
    for j in range(C):
        i_out[k, j] = g_out * (b[R - 1, j] - vbll[j])
    if slot[k] >= 0:                        # the series nodes at the solution, kept
        _series_u(a, b, gd, vgl, jbd, u, cell)
        oa[slot[k]] = a
        ob[slot[k]] = b
        om[slot[k]] = b + u


@nb.njit(nogil=True, **_JIT)
def solve_items(lo, hi, tile, warm, slot, v, vg, vbl, sa, sb, sm, oa, ob, om, i_out, g_dev,
                g_lin, g_min, inv_dw, inv_db, ac_inv, pr, pcT, wires, cell, ctrl, status, iters,
                moves):
    """Nonlinear reads of items ``lo`` … ``hi − 1``, an input vector of tile ``tile[k]`` each,
    one after the other in one set of scratch arrays (without the GIL: callers run disjoint
    ranges in threads). Per item: inputs ``v`` (n, R), gates ``vg`` (n, R), bit-line sense
    ends ``vbl`` (n, C), in V; sense currents into ``i_out`` (n, C) in A; the start's node
    voltages ``sa``, ``sb``, ``sm`` (n, R, C) in V if ``warm`` (else all 0 V); the solution's
    into ``oa``, ``ob``, ``om`` at index ``slot[k]`` if that is ≥ 0. Per tile: device and
    ``A_lin`` cell conductances ``g_dev``, ``g_lin`` (T, R, C) in S, ``g_min`` (T,) the weakest
    ``g_lin`` > 0; reciprocal pivots ``inv_dw``, ``inv_db`` (T, R, C) in Ω of the word and bit
    lines' tridiagonal blocks; ``ac_inv`` (T, 2K, K) in Ω, the coarse inverse's first K
    columns; coarse bases ``pr`` (R, kr), ``pcT`` (kc, C). ``wires``: g_in, g_wl, g_bl, g_out
    in S; ``cell``: beta A/V², vto V, v_bulk V, is A, V_T V; ``ctrl``: tolerance relative to the
    largest drive, max_iter, junction freeze, lag limit (V). Writes ``status``, ``iters`` and
    the last node movement ``moves`` (V) per item."""
    work = np.empty((8, g_dev.shape[1], g_dev.shape[2]))
    for k in range(lo, hi):
        _solve_one(k, tile[k], warm, slot, v, vg, vbl, sa, sb, sm, oa, ob, om, i_out, g_dev,
                   g_lin, g_min, inv_dw, inv_db, ac_inv, pr, pcT, wires, cell, ctrl, status,
                   iters, moves, work)
