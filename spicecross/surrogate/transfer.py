"""Exact transfer matrices of crossbar tiles with linear cells, by nested dissection (torch).

For fixed cell conductances a tile read is a linear network, so the sense currents are
``I = T·v`` with ``T`` (cols × rows, S) depending on the conductances and every wire segment.

The tile is cut into unit cells. Unit ``(i, j)`` holds the word-line segment left of its cell
(``g_in = 1/(r_driver + r_wire_wl)`` in column 0, else ``g_w = 1/r_wire_wl``), the cell conductance
``g[i, j]`` and the bit-line segment below it (``g_out = 1/(r_wire_bl + r_sense)`` in the last
row, else ``g_b = 1/r_wire_bl``). A block of ``a × b`` units is described by its port admittance
matrix (S) on ``2a + 2b`` ports, ordered ``[left word-line nodes (a), right word-line nodes (a),
top bit-line nodes (b), bottom bit-line nodes (b)]``. Two neighbouring blocks are merged by
eliminating their shared nodes (a Schur complement: Cholesky of the SPD interface block,
triangular solves, one matrix product); merges alternate between horizontal and vertical so
that blocks stay square, and every block of a level is merged in one batched torch call.

At the top, the left ports are the input sources, the bottom ports the 0 V sense sources; the
right word-line ends and top bit-line ends float and are eliminated last, leaving the
admittance ``Y`` between inputs and sense nodes: ``T = −Y[sense, input]``.

Every port matrix is a Laplacian (no node is grounded until the end): rows sum to zero, so
after each merge the diagonal is recomputed from the off-diagonal entries, which come out of
the Schur complement without cancellation; this keeps ``T`` accurate to rounding even with
0.1 Ω wires and µS cells. A merge of ``m × m`` blocks costs O(m³), so a square ``n × n`` tile
costs O(n³) (the former row recursion was O(n⁴)). Tiles whose size is not ``a0·2^k`` are padded
at the top and right with open (0 S) cells, which changes no current; blocks of at most 16 × 16
units are first built by merging one unit at a time (for powers of two the doublings start
at single units). Only Cholesky and triangular solves are
used: no LU (torch 2.13's MKL LU fails after ``torch.set_num_threads(n ≥ 2)``, see
:mod:`spicecross.threads`). Small blocks (interfaces of ≤ ``SMALL_INTERFACE`` nodes) are kept
ports-first, ``(P, P, batch)``, and eliminated node by node, so that each operation runs over a
long contiguous batch; larger ones batch-first for LAPACK/BLAS.

Measured single-threaded on the shared 2-core machine (``benchmarks/transfer.py --big``, under
load, two runs): 64/128/256/512 in 0.019/0.047/0.25–0.33/1.4–2.5 s vs 0.051/0.27/3.0–3.7/62–76 s
for the row recursion, agreeing with it to ≤ 2e-11 (max|ΔT|/max|T|). Working memory ≈ 110–160 float64 per cell of the
tiles built together; a batch is built in chunks of at most ``work_bytes`` (≥ one tile), so the
peak is about the output plus ``max(work_bytes, one tile)``.

Batches of at least :data:`CACHE_MIN_CELLS` cells are looked up in, and stored to, the on-disk
cache of :mod:`.transfer_cache` (key: the spec and the conductances), so a second run with the
same programmed network does not solve its wire networks again.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..circuit.tile import TileSpec
from ..threads import limited_threads
from .transfer_cache import cache_dir, content_key, load_arrays, store_arrays

#: Default bound (bytes) on the working memory of one chunk of tiles built together.
DEFAULT_WORK_BYTES = 256 * 2**20
#: Largest leaf block side (units) built one unit at a time before the doubling merges.
LEAF_MAX = 16
#: Interfaces of at most this many nodes are eliminated node by node (faster than batched
#: LAPACK calls on many tiny matrices).
SMALL_INTERFACE = 4
#: Bytes of joint matrices per piece of a merge: small enough (below glibc's 32 MiB mmap
#: threshold) that temporaries are reused by the allocator instead of mapped and faulted anew.
PIECE_BYTES = 16 * 2**20
#: Float64 words of working memory per unit cell during a build (measured peak RSS growth
#: 100–160 words per cell at 128×128 and 256×256).
_WORDS_PER_CELL = 160
#: Batches of at least this many cells go through the on-disk cache by default (two arrays of
#: 64×64, a build of ≈ 40 ms; reading the 64 KiB entry back takes ≈ 1 ms).
CACHE_MIN_CELLS = 2 * 64 * 64


def _split(n: int, leaf_max: int | None = None) -> tuple[int, int]:
    """(leaf side a0, doublings k) with a0·2^k ≥ n as small as possible (ties: more doublings,
    which are cheaper than building a large leaf one unit at a time)."""
    leaf_max = LEAF_MAX if leaf_max is None else leaf_max
    best = None
    for k in range(0, max(1, math.ceil(math.log2(n))) + 1):
        a0 = math.ceil(n / 2**k)
        if a0 > leaf_max:
            continue
        if best is None or a0 * 2**k <= best[0] * 2**best[1]:
            best = (a0, k)
    assert best is not None
    return best


def _merge(x: torch.Tensor, px: list[tuple[int, int]], y: torch.Tensor, py: list[tuple[int, int]],
           n_keep: int, n_int: int, ports_first: bool) -> torch.Tensor:
    """:func:`_merge_part` over pieces of the batch whose joint matrices take ≤ ``PIECE_BYTES``:
    small temporaries are reused by the allocator instead of being mapped (page-faulted) anew."""
    axes = range(2, x.dim()) if ports_first else range(0, x.dim() - 2)
    ax = max(axes, key=lambda i: x.shape[i])
    blocks = math.prod(x.shape[i] for i in axes)
    per_index = 8 * (n_keep + n_int) ** 2 * (blocks // max(1, x.shape[ax]))
    step = max(1, PIECE_BYTES // max(1, per_index))
    if step >= x.shape[ax]:
        return _merge_part(x, px, y, py, n_keep, n_int, ports_first)
    return torch.cat([_merge_part(x.narrow(ax, i, min(step, x.shape[ax] - i)), px,
                                  y.narrow(ax, i, min(step, x.shape[ax] - i)), py, n_keep, n_int,
                                  ports_first) for i in range(0, x.shape[ax], step)], dim=ax)


def _merge_part(x: torch.Tensor, px: list[tuple[int, int]], y: torch.Tensor,
                py: list[tuple[int, int]], n_keep: int, n_int: int, ports_first: bool) -> torch.Tensor:
    """Port matrix (S) of two blocks joined at ``n_int`` shared nodes, those nodes eliminated.

    ``px``/``py`` list each block's port groups in order as ``(start, length)`` in the joint
    numbering ``[kept (n_keep), shared (n_int)]``. Layout ``(P, P, *batch)`` if ``ports_first``
    (small blocks: node-by-node elimination, every operation elementwise over a contiguous
    batch), else ``(*batch, P, P)`` (Cholesky, triangular solve and a product per block).
    """
    n = n_keep + n_int
    if ports_first:
        k = x.new_zeros((n, n) + x.shape[2:])
        view = lambda t, i, li, j, lj: t[i:i + li, j:j + lj]          # noqa: E731
    else:
        k = x.new_zeros(x.shape[:-2] + (n, n))
        view = lambda t, i, li, j, lj: t[..., i:i + li, j:j + lj]     # noqa: E731
    for blk, groups in ((x, px), (y, py)):
        offs = np.cumsum([0] + [ln for _, ln in groups])
        for (di, li), si in zip(groups, offs):
            for (dj, lj), sj in zip(groups, offs):
                view(k, di, li, dj, lj).add_(view(blk, si, li, sj, lj))
    if ports_first:
        for t in range(n - 1, n_keep - 1, -1):
            k = torch.addcmul(k[:t, :t], k[:t, t:t + 1], k[t:t + 1, :t] / k[t, t], value=-1.0)
        d = k.diagonal(dim1=0, dim2=1)                                  # (*batch, n_keep)
        d.copy_(d - k.sum(1).movedim(0, -1))
        return k
    return _eliminate(k, n_keep)


def _eliminate(k: torch.Tensor, n_keep: int) -> torch.Tensor:
    """Port matrices (*batch, n_keep, n_keep) in S of Laplacians ``k`` (*batch, n, n) with their
    last ``n − n_keep`` nodes eliminated (Schur complement by Cholesky; the diagonal recomputed
    from the off-diagonal entries, which come out without cancellation)."""
    n_int = k.shape[-1] - n_keep
    chol = torch.linalg.cholesky(k[..., n_keep:, n_keep:])
    w = torch.linalg.solve_triangular(chol, k[..., n_keep:, :n_keep], upper=False)  # (n_int, n_keep)
    batch = k.shape[:-2]
    s = torch.baddbmm(k[..., :n_keep, :n_keep].reshape(-1, n_keep, n_keep),
                      w.mT.reshape(-1, n_keep, n_int), w.reshape(-1, n_int, n_keep),
                      alpha=-1.0).reshape(batch + (n_keep, n_keep))
    d = s.diagonal(dim1=-2, dim2=-1)
    d.copy_(d - s.sum(-1))           # Laplacian: diagonal = −Σ off-diagonal (rows sum to 0 S)
    return s


def _merge_h(x: torch.Tensor, y: torch.Tensor, a: int, b1: int, b2: int, pf: bool) -> torch.Tensor:
    """Join block x (a × b1 units) to the left of block y (a × b2)."""
    nk = 2 * a + 2 * (b1 + b2)
    px = [(0, a), (nk, a), (2 * a, b1), (2 * a + b1 + b2, b1)]
    py = [(nk, a), (a, a), (2 * a + b1, b2), (2 * a + 2 * b1 + b2, b2)]
    return _merge(x, px, y, py, nk, a, pf)


def _merge_v(x: torch.Tensor, y: torch.Tensor, a1: int, a2: int, b: int, pf: bool) -> torch.Tensor:
    """Join block x (a1 × b units) on top of block y (a2 × b)."""
    a = a1 + a2
    nk = 2 * a + 2 * b
    px = [(0, a1), (a, a1), (2 * a, b), (nk, b)]
    py = [(a1, a2), (a + a1, a2), (nk, b), (2 * a + b, b)]
    return _merge(x, px, y, py, nk, b, pf)


def _units(spec: TileSpec, g: torch.Tensor, rows_p: int, cols_p: int, driven: bool = True
           ) -> torch.Tensor:
    """Port matrices (4, 4, batch, rows_p, cols_p) in S of the unit cells of a block of the
    tile's full height, padded at the top and right with open cells; ports [left WL, right WL
    (cell node), top BL (cell node), bottom BL]. ``driven``: the block's first column is the
    tile's first (its word-line segments include the driver)."""
    R, C = g.shape[-2:]
    gp = g.new_zeros(g.shape[:-2] + (rows_p, cols_p))
    gp[..., rows_p - R:, :C] = g
    gw = torch.full((rows_p, cols_p), 1.0 / spec.r_wire_wl_ohm, dtype=torch.float64)
    if driven:
        gw[:, 0] = 1.0 / (spec.r_driver_ohm + spec.r_wire_wl_ohm)
    gb = torch.full((rows_p, cols_p), 1.0 / spec.r_wire_bl_ohm, dtype=torch.float64)
    gb[-1, :] = 1.0 / (spec.r_wire_bl_ohm + spec.r_sense_ohm)
    u = g.new_zeros((4, 4) + gp.shape)
    u[0, 0] = gw
    u[0, 1] = u[1, 0] = -gw
    u[1, 1] = gw + gp
    u[1, 2] = u[2, 1] = -gp
    u[2, 2] = gp + gb
    u[2, 3] = u[3, 2] = -gb
    u[3, 3] = gb
    return u


def _half(t: torch.Tensor, axis: int, start: int) -> torch.Tensor:
    """Every other block along ``axis``, from ``start``."""
    return t[(slice(None),) * axis + (slice(start, None, 2),)]


def _block_ports(spec: TileSpec, g: torch.Tensor, driven: bool = True
                 ) -> tuple[torch.Tensor, int, int]:
    """Port matrices (batch, P, P) in S of blocks of the tile's full height with conductances
    (batch, rows, cols) in S, and their padded sides (a rows, b columns of units): P = 2a + 2b
    ports ordered [left WL (a), right WL (a), top BL (b), bottom BL (b)]."""
    R, C = g.shape[-2:]
    (a0, kr), (b0, kc) = _split(R), _split(C)
    rows_p, cols_p = a0 * 2**kr, b0 * 2**kc
    nr, nc = 2**kr, 2**kc
    u = _units(spec, g, rows_p, cols_p, driven).reshape(4, 4, -1, nr, a0, nc, b0)
    strip = u[..., 0]                                           # (P, P, B, nr, a0, nc)
    for j in range(1, b0):
        strip = _merge_h(strip, u[..., j], 1, j, 1, True)
    blk = strip[:, :, :, :, 0]                                  # (P, P, B, nr, nc)
    for i in range(1, a0):
        blk = _merge_v(blk, strip[:, :, :, :, i], i, 1, b0, True)
    a, b, pf = a0, b0, True
    while nr > 1 or nc > 1:
        horizontal = nc > 1 and (b <= a or nr == 1)
        if pf and (a if horizontal else b) > SMALL_INTERFACE:
            blk, pf = blk.permute(2, 3, 4, 0, 1), False         # (B, nr, nc, P, P)
        ax = (4 if horizontal else 3) if pf else (2 if horizontal else 1)
        if horizontal:
            blk = _merge_h(_half(blk, ax, 0), _half(blk, ax, 1), a, b, b, pf)
            nc, b = nc // 2, 2 * b
        else:
            blk = _merge_v(_half(blk, ax, 0), _half(blk, ax, 1), a, a, b, pf)
            nr, a = nr // 2, 2 * a
    y = blk[:, :, :, 0, 0].permute(2, 0, 1) if pf else blk[:, 0, 0]   # (B, P, P), P = 2a + 2b
    return y, a, b


def _sense_t(y: torch.Tensor, a: int, b: int, rows: int, n_cols: int) -> torch.Tensor:
    """T (batch, n_cols, rows) in S from a whole tile's port matrices ``y`` (batch, P, P) with
    ports [inputs (a), floating right WL ends (a), floating top BL ends (b), sense nodes (b),
    any further nodes held at 0 V]: the floating ends eliminated, the sense currents of the first
    ``n_cols`` bit lines for the last ``rows`` inputs."""
    lo, hi = a, 2 * a + b                                       # floating: right WL, top BL ends
    chol = torch.linalg.cholesky(y[:, lo:hi, lo:hi])
    w_in = torch.linalg.solve_triangular(chol, y[:, lo:hi, :a], upper=False)
    w_out = torch.linalg.solve_triangular(chol, y[:, lo:hi, hi:hi + n_cols], upper=False)
    t = torch.baddbmm(y[:, hi:hi + n_cols, :a], w_out.mT, w_in, alpha=-1.0).neg_()
    return t[:, :, a - rows:]


def _build(spec: TileSpec, g: torch.Tensor) -> torch.Tensor:
    """T (batch, cols, rows) in S for conductances (batch, rows, cols) in S, one chunk."""
    y, a, b = _block_ports(spec, g)
    return _sense_t(y, a, b, spec.rows, b)[:, :spec.cols]


def _rest_ports(spec: TileSpec, rows: int, width: int, g0_s: float) -> torch.Tensor:
    """Port matrix (a + 1, a + 1) in S of a tile's last ``width`` columns when every cell there
    is ``g0_s``: ports [its left word-line ends (a, padded rows first), ground]; its right
    word-line and top bit-line ends (floating) eliminated, its sense nodes (0 V) joined into the
    ground node. Built from the right edge, strip by strip of :data:`LEAF_MAX` columns (the
    first strip takes the remainder), each strip's ports joined to the rest to its right; every
    width on the way is kept (:data:`_REST_PORTS`), so the remainders of other layers' tiles
    cost one strip each. Depends on no weight."""
    key = (spec.r_wire_wl_ohm, spec.r_wire_bl_ohm, spec.r_driver_ohm, spec.r_sense_ohm, rows,
           width, float(g0_s))
    if key in _REST_PORTS:
        return _REST_PORTS[key]
    step = width % LEAF_MAX or LEAF_MAX
    right = _rest_ports(spec, rows, width - step, g0_s) if width > step else None
    strip_key = key[:5] + (step, float(g0_s), "strip")
    if strip_key not in _REST_PORTS:
        _REST_PORTS[strip_key] = _block_ports(spec, torch.full((1, rows, step), float(g0_s),
                                                               dtype=torch.float64), driven=False)
    y, a, b = _REST_PORTS[strip_key]
    # ports [left a, right a, top b, bottom b] -> nodes [left a, ground, right a, top b]
    node = torch.cat([torch.arange(a), a + 1 + torch.arange(a + b),
                      torch.full((b,), a, dtype=torch.long)])
    n = 2 * a + b + 1
    k = y.new_zeros((n, n)).index_add_(0, node, y.new_zeros((n, y.shape[-1])).index_add_(
        0, node, y[0]).T).T
    if right is not None:                        # the columns to the right, at [right, ground]
        at = torch.cat([torch.arange(a + 1, 2 * a + 1), torch.tensor([a])])
        k[at[:, None], at[None, :]] += right
    if len(_REST_PORTS) >= 256:
        _REST_PORTS.clear()
    _REST_PORTS[key] = _eliminate(k, a + 1)
    return _REST_PORTS[key]


#: Port matrices of uniform remainders and their strips (:func:`_rest_ports`), by spec, shape
#: and conductance.
_REST_PORTS: dict[tuple, object] = {}


def _build_split(spec: TileSpec, g: torch.Tensor, width: int, n_cols: int, g0_s: float
                 ) -> torch.Tensor:
    """T (batch, n_cols, rows) in S, like :func:`_build`, for tiles whose columns from
    ``width`` on all hold ``g0_s``: the first ``width`` columns by nested dissection, the rest
    as its memoized port matrix (:func:`_rest_ports`) attached to their right word-line ends."""
    y, a, b = _block_ports(spec, g[:, :, :width])
    rest = _rest_ports(spec, spec.rows, spec.cols - width, g0_s)
    p = y.shape[-1]
    full = y.new_zeros((y.shape[0], p + 1, p + 1))
    full[:, :p, :p] = y
    at = torch.cat([torch.arange(a, 2 * a), torch.tensor([p])])      # right WL ends, ground
    full[:, at[:, None], at[None, :]] += rest
    return _sense_t(full, a, b, spec.rows, n_cols)


def _split_width(n_cols: int, cols: int) -> int | None:
    """Width of the columns built by nested dissection when only the first ``n_cols`` of
    ``cols`` bit lines are wanted (the smallest unpadded width ≥ ``n_cols``), None if none is
    narrower than the tile."""
    b0, k = _split(n_cols)
    width = b0 * 2**k
    return width if width < cols else None


def transfer_matrices(spec: TileSpec, g_cell_s: np.ndarray | torch.Tensor, *,
                      n_cols: int | None = None, work_bytes: int = DEFAULT_WORK_BYTES,
                      cache: bool | None = None) -> torch.Tensor:
    """Transfer matrices T (..., n_cols, rows) in S for cell conductances (..., rows, cols) in S:
    the sense currents of the first ``n_cols`` bit lines (default all ``cols``).

    Any leading batch dimensions are tiles solved together, in chunks whose working memory
    stays near ``work_bytes`` (at least one tile per chunk). ``I = T @ v`` gives the sense
    currents (A) for input voltages ``v`` (V). Float64 throughout.

    With ``n_cols < cols`` a tile whose remaining columns (from the smallest unpadded width ≥
    ``n_cols`` on) all hold one conductance — the unused columns of a layer's last tiles —
    solves only its first columns by nested dissection and attaches the rest as one port
    matrix built once (:func:`_build_split`): the same network, far less work.

    ``cache``: look the whole batch up in the on-disk cache (:mod:`.transfer_cache`, keyed by
    the spec and the conductances) and store it there after a build; ``None`` (default) does so
    for batches of at least :data:`CACHE_MIN_CELLS` cells (a smaller build costs about as much
    as hashing and reading it), ``False`` never (e.g. the iterations of IR-drop compensation).
    """
    g = torch.as_tensor(g_cell_s, dtype=torch.float64)
    if g.shape[-2:] != (spec.rows, spec.cols):
        raise ValueError(f"cell conductances must end in shape ({spec.rows}, {spec.cols}), got {tuple(g.shape)}")
    if not bool(torch.isfinite(g).all()) or bool((g < 0).any()):
        raise ValueError("cell conductances must be finite and ≥ 0 S")
    n_cols = spec.cols if n_cols is None else n_cols
    if isinstance(n_cols, bool) or not isinstance(n_cols, (int, np.integer)) \
            or not 1 <= n_cols <= spec.cols:
        raise ValueError(f"n_cols must be a number of bit lines in 1..{spec.cols}, got {n_cols!r}")
    batch = g.shape[:-2]
    flat = g.reshape(-1, spec.rows, spec.cols)
    shape = (flat.shape[0], n_cols, spec.rows)
    if cache is None:
        cache = flat.numel() >= CACHE_MIN_CELLS
    key = None
    if cache and cache_dir() is not None:       # no hashing when the cache is off
        meta = {"spec": spec.to_json(), **({"n_cols": int(n_cols)} if n_cols < spec.cols else {})}
        key = content_key("T", meta, flat.numpy())
        hit = load_arrays(key, {"t_s": shape})
        if hit is not None:
            return torch.from_numpy(hit["t_s"]).reshape(batch + shape[1:])
    out = torch.empty(shape, dtype=torch.float64)
    width = _split_width(n_cols, spec.cols) if n_cols < spec.cols else None
    groups = [(None, torch.arange(flat.shape[0]))]
    if width is not None:
        g0 = flat[:, 0, width]
        uniform = (flat[:, :, width:] == g0[:, None, None]).all(dim=2).all(dim=1)
        groups = [(None, torch.nonzero(~uniform).flatten())] + [
            (float(v), torch.nonzero(uniform & (g0 == v)).flatten()) for v in g0[uniform].unique()]
    # one torch thread: a build is thousands of small operations, each a parallel region whose
    # threads wait for each other; on the 2-core machine under load 7-8 the MNIST network's T
    # at 64x64 took 38.8 s with two threads, 0.56 s with one (benchmarks/inference.py, "T build
    # alone"). Only Cholesky and triangular solves here: the MKL fault after set_num_threads
    # (spicecross.threads) is in LU.
    with limited_threads(1):
        for g0_s, idx in groups:
            cells = spec.rows * (spec.cols if g0_s is None else width)
            chunk = max(1, int(work_bytes // (8 * _WORDS_PER_CELL * cells)))
            for start in range(0, len(idx), chunk):
                part = idx[start:start + chunk]
                out[part] = (_build(spec, flat[part])[:, :n_cols] if g0_s is None
                             else _build_split(spec, flat[part], width, n_cols, g0_s))
    if key is not None:
        store_arrays(key, {"t_s": out.numpy()})
    return out.reshape(batch + shape[1:])
