"""The compiled kernel of the line solver (:mod:`~spicecross.surrogate.nonlinear_lines`): the
whole nonlinear iteration of 1T1R tile reads in numba, one input vector after the other (its
working arrays stay in the core's L2 cache on a 64×64 tile), every inner loop along a row's
columns (SIMD), without the GIL (the caller runs ranges of vectors in threads; no numba
threading layer, whose OpenMP would fight torch's).

One iteration, for word- and bit-line node voltages ``a``, ``b`` (V), in three passes:

1. rows top down, four at a time (:func:`_forward`): every cell's currents in closed form (the
   selector in triode, lambda 0, the junction currents ``J`` (A) of the last iteration: the
   root of :meth:`~spicecross.surrogate.nonlinear.BlockSolver._cells_triode`'s quadratic) and
   the KCL residual (A) of the row's word- and bit-line nodes; the four word lines solved for
   their correction with ``A_lin``'s tridiagonal row blocks (pivots factored once per tile, no
   division here, the lines interleaved); ``a += δa``; the bit lines' forward elimination of
   their residual plus the cells' coupling ``G_lin·δa``. In the first iteration from 0 V (and
   junctions at 0 A) the residual is the drives' currents alone and is not evaluated;
2. rows bottom up (:func:`~spicecross.surrogate.nonlinear_sweeps.backward`): the bit lines'
   back substitution, ``b += δb``; the residual ``G_lin·δb`` this block Gauss–Seidel sweep
   leaves on the word-line nodes restricted to the coarse space (products of Legendre
   polynomials of degree ≤ 2 in row and column position, on word- and on bit-line nodes);
3. the coarse correction ``Z·(Zᵀ·A_lin·Z)⁻¹·Zᵀ·r`` added to ``a`` and ``b``, with the node
   movement.

The line solves start with ``A_lin``'s cells (the Jacobian's at 0 V). Once per vector, in the
second iteration's first pass (the first's if warm), the cells are linearized where that
iteration starts (:func:`_linearize`: ``ga = ∂I/∂a`` on the word-line side, ``gb = −∂I/∂b`` on
the bit-line side, S) and the word and bit lines refactored with them (per-vector pivots, one
division per cell each); the coarse correction keeps ``A_lin``'s. At 0.2 V the cells' selectors
make the Jacobian differ from ``A_lin`` by a few %, which bounded the contraction at ≈ 0.013;
with the linearized lines it is ≈ 0.004 (a 64×64 tile with 0.1 Ω wires: 5 iterations, not 6).

Only step 1's residual decides the fixed point: the level-1 equations of
:mod:`~spicecross.surrogate.cells`, evaluated with fused multiply-adds and reassociation
allowed (their rounding differs from torch's at the 1e-16 level; the junction exponential
:func:`exp_f64` is within one ulp of libm's). The rest applies a linear operator ``≈ J⁻¹``
(fixed once the cells are linearized) to it, so it decides only the convergence rate. The
stopping rule and the junction freeze are the block solver's (the node movement is each node's
whole change in an iteration), the rate estimate the larger of the last two. Status per
vector: :data:`SOLVED`; :data:`OUTSIDE_REGIME` (a cell not in triode where last evaluated, a
drain junction forward biased past the lag limit, a non-finite value); :data:`NOT_CONVERGED`
within ``max_iter``: the caller re-solves those with the general solver.

Loops write no maximum back where they read it (that compiles to masked stores, slow on AMD
cores) and keep running maxima out of loops that should vectorize. The passes' per-row helpers
are inlined (≈ 12 % of a 64×64 read); not :func:`_junctions`, which the plain :func:`_solve_one`
also calls (a warm start), as an inlined function takes its caller's fastmath flags.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np
from numba.core import types
from numba.extending import intrinsic

from . import nonlinear_sweeps as sw

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
def _junctions(i, b, u, gd, jbd, jsum, cell, xr):
    """Row ``i``'s junction currents (A) at series nodes b + u and bit-line nodes b (V) into
    ``jbd`` and ``jsum`` (both junctions), for the next iteration. ``u`` (C,): this row's.
    Returns the row's largest bulk-to-terminal voltage (V) of an on-cell, −1e300 if none
    (kept per column in ``xr`` (C,) first: a running maximum in the loop would keep the
    compiler from vectorizing it)."""
    C = b.shape[1]
    vbk, is_a, vt = cell[2], cell[3], cell[4]
    for j in range(C):
        on = gd[i, j] > 0.0
        x_bd, x_sb = vbk - (b[i, j] + u[j]), vbk - b[i, j]
        jv = junction_a(x_bd, is_a, vt)
        jbd[i, j] = jv if on else 0.0
        js = jv + junction_a(x_sb, is_a, vt)
        jsum[i, j] = js if on else 0.0
        x = max(x_bd, x_sb)
        xr[j] = x if on else -1e300
    hot = -1e300
    for j in range(C):
        hot = max(hot, xr[j])
    return hot


@nb.njit(inline="always", **_FAST)
def _residual_row(i, a, b, gd, jbd, jsum, vin, vg, vbl, wires, cell, rw, rb, u):
    """Row ``i``'s cells in closed form (the selector in triode, lambda 0, the last iteration's
    junction currents ``jbd``, ``jsum``: the root of
    :meth:`~spicecross.surrogate.nonlinear.BlockSolver._cells_triode`'s quadratic): u = m − b
    (V) into ``u``, the KCL residuals (A, into the nodes) of its word- and bit-line nodes into
    ``rw``, ``rb`` (C,). Returns how many on-cells the closed form does not hold for (not in
    triode, V_ov ≤ max(u, 0), or u not finite)."""
    R, C = a.shape
    g_in, g_w, g_b, g_out = wires[0], wires[1], wires[2], wires[3]
    beta, vto = cell[0], cell[1]
    bad = 0
    c_up = g_b if i > 0 else 0.0
    c_dn = g_b if i + 1 < R else 0.0
    c_s = g_out if i + 1 == R else 0.0
    iu, idn = max(i - 1, 0), min(i + 1, R - 1)
    vgl = vg[i] - vto
    for j in range(C):
        g = gd[i, j]
        ai = a[i, j]
        bi = b[i, j]
        vov = vgl - bi
        p = g + beta * vov
        q = g * (ai - bi) + jbd[i, j]
        uu = 2.0 * q / (p + math.sqrt(p * p - 2.0 * beta * q))
        u[j] = uu
        on = g > 0.0
        bad += on & (vov <= max(uu, 0.0))
        jw = g * ((bi + uu) - ai)                   # = −(current into the cell)
        jw = jw if on else 0.0
        rw[j] = jw
        cc = jsum[i, j] - jw
        rb[j] = ((cc if on else 0.0)
                 + c_up * (b[iu, j] - bi) + c_dn * (b[idn, j] - bi) + c_s * (vbl[j] - bi))
    for j in range(1, C - 1):
        rw[j] += g_w * ((a[i, j - 1] - a[i, j]) + (a[i, j + 1] - a[i, j]))
    rw[0] += g_in * (vin[i] - a[i, 0])
    if C > 1:
        rw[0] += g_w * (a[i, 1] - a[i, 0])
        rw[C - 1] += g_w * (a[i, C - 2] - a[i, C - 1])
    return bad


@nb.njit(inline="always", **_FAST)
def _linearize(i, b, u, gd, vgl, cell, ga, gb, idb, degb, g_b):
    """Row ``i`` of the Jacobian's cells where the iteration starts, for the line solves (the
    closed form's derivatives ``ga = ∂I/∂a``, ``gb = −∂I/∂b`` in S, the channel conductance
    ``β(V_ov − u)`` and ``V_ov`` clamped at 0) and the bit lines' reciprocal pivots of row
    ``i`` (Ω, from row i − 1's)."""
    C = b.shape[1]
    beta = cell[0]
    gb2 = g_b * g_b if i > 0 else 0.0
    gai, gbi, ii, iu = ga[i], gb[i], idb[i], idb[max(i - 1, 0)]
    d = degb[i]
    for j in range(C):
        g = gd[i, j]
        vov = vgl - b[i, j]
        gch = max(beta * (vov - u[j]), 0.0)
        inv = g / (g + gch)
        inv = inv if g > 0.0 else 0.0
        gai[j] = gch * inv
        gbi[j] = beta * max(vov, 0.0) * inv
    for j in range(C):
        up = iu[j] if i > 0 else 0.0
        ii[j] = 1.0 / ((gbi[j] + d) - gb2 * up)


@nb.njit(**_FAST)
def _forward(a, b, da, yb, jbd, jsum, gd, vin, vg, vbl, wires, cell, ga, gb, idw, idb,
             update_j, zero, relin, degw, degb, s4):
    """The iteration's first pass, rows top down in blocks of four: every cell's current in
    closed form (the selector in triode, lambda 0, the last iteration's junction currents
    ``jbd``, ``jsum``: the root of
    :meth:`~spicecross.surrogate.nonlinear.BlockSolver._cells_triode`'s quadratic) and the KCL
    residual (A) of the row's word- and bit-line nodes; if ``update_j`` the junction currents
    at these nodes for the next iteration (:func:`_junctions`); if ``relin`` the cells
    linearized there into ``ga``, ``gb`` and the lines' pivots ``idw``, ``idb`` refactored with
    them (:func:`_linearize`; ``degw`` (C,), ``degb`` (R,): the wires' degrees, S); the word
    lines solved (δa: ``a += δa``, ``da = δa``) with the pivots ``idw`` (Ω); the bit lines'
    forward elimination of their residual plus the cells' coupling ``Ga·δa`` into ``yb``
    (pivots ``idb``). Returns how many on-cells the closed form does not
    hold for (not in triode, V_ov ≤ max(u, 0), or u not finite), and the largest junction
    voltage (V) of the update (−1e300 without). ``zero``: every node and junction at 0 V (the
    first residual is the drives' currents alone). ``s4`` (4, 4, C): scratch."""
    R, C = a.shape
    g_in, g_w, g_b, g_out = wires[0], wires[1], wires[2], wires[3]
    beta, vto = cell[0], cell[1]
    rw4, rb4, u4 = s4[0], s4[1], s4[2]
    bad = 0
    hot = -1e300
    for i0 in range(0, R, 4):
        nr = min(4, R - i0)
        for r in range(nr):
            i = i0 + r
            if zero:            # every node and junction at 0 V: only the drives' currents
                rw4[r] = 0.0
                rw4[r, 0] = g_in * vin[i]
                for j in range(C):
                    rb4[r, j] = g_out * vbl[j] if i + 1 == R else 0.0
                continue
            bad += _residual_row(i, a, b, gd, jbd, jsum, vin, vg, vbl, wires, cell, rw4[r],
                                 rb4[r], u4[r])
            if update_j:
                hot = max(hot, _junctions(i, b, u4[r], gd, jbd, jsum, cell, s4[3, 0]))
            if relin:
                _linearize(i, b, u4[r], gd, vg[i] - cell[1], cell, ga, gb, idb, degb, g_b)
        if relin:
            sw.word_pivots4(ga, degw, idw, i0, g_w)
        sw.word4(rw4, idw, i0, g_w)
        for r in range(nr):
            _bit_forward_row(i0 + r, a, da, yb, rw4[r], rb4[r], ga, idb, g_b)
    return bad, hot


@nb.njit(inline="always", **_FAST)
def _bit_forward_row(i, a, da, yb, x, rb, gl, idb, g_b):
    """Row ``i``: ``a += δa``, ``da = δa`` (``x``, V) and the bit lines' forward elimination of
    their residual ``rb`` plus the cells' coupling ``G_lin·δa`` (A) into ``yb``."""
    C = a.shape[1]
    c_up = g_b if i > 0 else 0.0
    iu = max(i - 1, 0)
    ai, dai = a[i], da[i]
    for j in range(C):              # two loops: fewer arrays, fewer aliasing checks
        ai[j] += x[j]
        dai[j] = x[j]
    yi, yu, gi, ii = yb[i], yb[iu], gl[i], idb[i]
    for j in range(C):
        yi[j] = (rb[j] + gi[j] * x[j] + c_up * yu[j]) * ii[j]


@nb.njit(**_FAST)
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
               inv_dw, inv_db, ac_inv, pr, pcT, degw, degb, wires, cell, ctrl, status, iters,
               moves, work, s4):
    """Item ``k`` (a vector of tile ``t``) in the scratch arrays ``work`` (10, R, C) and ``s4``
    (4, 4, C): see :func:`solve_items`."""
    R, C = g_dev.shape[1], g_dev.shape[2]
    K = ac_inv.shape[2]
    tol_rel, max_iter, jfreeze, lag_max = ctrl[0], int(ctrl[1]), ctrl[2], ctrl[3]
    vbk, is_a, vt = cell[2], cell[3], cell[4]
    g_b, g_out = wires[2], wires[3]
    a, b, da, yb, jbd, jsum = work[0], work[1], work[2], work[3], work[4], work[5]
    yb[:] = 0.0
    vin, vgl, vbll = v[k], vg[k], vbl[k]
    gd = g_dev[t]
    # A_lin's cells (the Jacobian's at 0 V) until linearized where the vector is
    ga, gb, idw, idb = g_lin[t], g_lin[t], inv_dw[t], inv_db[t]
    scale = max(abs(vbk), 1e-30, np.abs(vin).max(), np.abs(vbll).max())
    tol = tol_rel * scale
    jtol = jfreeze * tol * g_min[t]
    s, y, below, big = np.zeros(K), np.zeros(2 * K), np.empty(C), np.empty((2, C))
    zero = False
    if warm:
        a[:] = sa[k]
        b[:] = sb[k]
        hot_max = -1e300
        for i in range(R):
            for j in range(C):
                da[i, j] = sm[k, i, j] - b[i, j]    # the start's series nodes as u = m − b
            hot_max = max(hot_max, _junctions(i, b, da[i], gd, jbd, jsum, cell, yb[0]))
    else:                       # every node at 0 V: both junctions at the bulk voltage
        a[:] = 0.0
        b[:] = 0.0
        j0 = junction_a(vbk, is_a, vt)
        for i in range(R):
            for j in range(C):
                jbd[i, j] = j0 if gd[i, j] > 0.0 else 0.0
                jsum[i, j] = 2.0 * j0 if gd[i, j] > 0.0 else 0.0
        hot_max = vbk
        zero = j0 == 0.0        # the first residual is then the drives' currents alone
    frozen = done = False
    ok = True
    bad = 0
    prev = delta = scale
    rho_last = 1.0
    it = 0
    while it < max_iter and not done:
        if hot_max > lag_max:   # a forward-biased drain junction: not lagged (general solver)
            ok = False
            break
        g_j = (is_a / vt * math.exp(min(hot_max / vt, EXP_ARG_MAX)) + GMIN_S
               if hot_max > -3.0 * vt else GMIN_S)
        it += 1
        # the junctions at this iteration's start, for the next (not in the first: done above)
        update_j = not frozen and it > 1
        # the Newton linearization, once: at a warm start, else after the first iteration
        relin = it == (1 if warm else 2)
        if relin:
            ga, gb, idw, idb = work[6], work[7], work[8], work[9]
        bad, hot = _forward(a, b, da, yb, jbd, jsum, gd, vin, vgl, vbll, wires, cell, ga, gb,
                            idw, idb, update_j, zero and it == 1, relin, degw, degb, s4)
        if update_j:
            hot_max = hot
        sw.backward(b, yb, gb, idb, g_b, pr, pcT, s, below)
        chk = sw.coarse_step(ac_inv[t], s, y)
        delta = sw.add_coarse(a, b, y, pr, pcT, da, yb, big)
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
        _series_u(a, b, gd, vgl, jbd, da, cell)
        oa[slot[k]] = a
        ob[slot[k]] = b
        mk = om[slot[k]]
        for i in range(R):
            for j in range(C):
                mk[i, j] = b[i, j] + da[i, j]


@nb.njit(nogil=True, **_JIT)
def solve_items(lo, hi, tile, warm, slot, v, vg, vbl, sa, sb, sm, oa, ob, om, i_out, g_dev,
                g_lin, g_min, inv_dw, inv_db, ac_inv, pr, pcT, degw, degb, wires, cell, ctrl,
                status, iters, moves):
    """Nonlinear reads of items ``lo`` … ``hi − 1``, an input vector of tile ``tile[k]`` each,
    one after the other in one set of scratch arrays (without the GIL: callers run disjoint
    ranges in threads). Per item: inputs ``v`` (n, R), gates ``vg`` (n, R), bit-line sense
    ends ``vbl`` (n, C), in V; sense currents into ``i_out`` (n, C) in A; the start's node
    voltages ``sa``, ``sb``, ``sm`` (n, R, C) in V if ``warm`` (else all 0 V); the solution's
    into ``oa``, ``ob``, ``om`` at index ``slot[k]`` if that is ≥ 0. Per tile: device and
    ``A_lin`` cell conductances ``g_dev``, ``g_lin`` (T, R, C) in S, ``g_min`` (T,) the weakest
    ``g_lin`` > 0; reciprocal pivots ``inv_dw``, ``inv_db`` (T, R, C) in Ω of the word and bit
    lines' tridiagonal blocks; ``ac_inv`` (T, 2K, K) in Ω, the coarse inverse's first K
    columns; coarse bases ``pr`` (R, kr), ``pcT`` (kc, C); the wires' degrees ``degw`` (C,),
    ``degb`` (R,) of word- and bit-line nodes in S. ``wires``: g_in, g_wl, g_bl, g_out in S;
    ``cell``: beta A/V², vto V, v_bulk V, is A, V_T V; ``ctrl``: tolerance relative to the
    largest drive, max_iter, junction freeze, lag limit (V). Writes ``status``, ``iters`` and
    the last node movement ``moves`` (V) per item."""
    R, C = g_dev.shape[1], g_dev.shape[2]
    work = np.zeros((10, R, C))
    s4 = np.zeros((4, 4, C))
    for k in range(lo, hi):
        _solve_one(k, tile[k], warm, slot, v, vg, vbl, sa, sb, sm, oa, ob, om, i_out, g_dev,
                   g_lin, g_min, inv_dw, inv_db, ac_inv, pr, pcT, degw, degb, wires, cell, ctrl,
                   status, iters, moves, work, s4)
