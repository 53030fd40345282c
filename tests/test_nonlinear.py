"""The nonlinear mode's solvers: the torch block iteration and the compiled line solver against
each other, against the sparse-LU fixed point they replaced and against ngspice."""
import numpy as np
import pytest
import torch

from spicecross.circuit.tile import SelectorSpec, TileSpec
from spicecross.spice.solve import solve_many
from spicecross.surrogate.mapping import effective_cell_conductance
from spicecross.surrogate.network import build_network
from spicecross.surrogate.nonlinear import BlockSolver, block_network, read_many
from spicecross.surrogate.tile_model import TileSurrogate
from conftest import three_1t1r_tiles


def rel_max(a, b):
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


def random_tile(rows, cols, seed, open_cells=3):
    rng = np.random.default_rng(seed)
    g = rng.uniform(1 / 2500, 1 / 100, (rows, cols))
    g.flat[rng.choice(rows * cols, open_cells, replace=False)] = 0.0     # cells left open
    return rng, g


@pytest.mark.parametrize("rows,cols,r_wl,r_bl,r_drv,r_sense", [
    (8, 8, 1.0, 1.0, 0.0, 0.0), (12, 20, 2.5, 1.5, 3.0, 2.0), (24, 10, 0.1, 0.1, 0.0, 1.0)])
def test_block_network_solves_the_nodal_system(rows, cols, r_wl, r_bl, r_drv, r_sense):
    spec = TileSpec(rows=rows, cols=cols, cell="1t1r", r_wire_wl_ohm=r_wl, r_wire_bl_ohm=r_bl,
                    r_driver_ohm=r_drv, r_sense_ohm=r_sense)
    rng, g = random_tile(rows, cols, rows + cols)
    r = rng.normal(size=(4, 2, rows, cols)) * 1e-3
    ref = build_network(spec, g).factorize().solve(r.reshape(4, -1).T).T.reshape(4, 2, rows, cols)
    a, b = block_network(spec, g[None], torch.float64).solve(
        *(torch.as_tensor(r[:, k]).permute(1, 0, 2)[None] for k in (0, 1)))
    assert rel_max(a[0].permute(1, 0, 2).numpy(), ref[:, 0]) < 1e-11
    assert rel_max(b[0].permute(1, 0, 2).numpy(), ref[:, 1]) < 1e-11


CASES = {   # name: (rows, cols, r_wire (Ω), selector, input range (V))
    "read_0.2V": (16, 16, 2.5, SelectorSpec(), (0.0, 0.2)),
    "bipolar_0.2V": (32, 24, 0.1, SelectorSpec(), (-0.2, 0.2)),
    "plus_3V": (16, 16, 1.0, SelectorSpec(), (0.0, 3.0)),
    "saturating_9V": (8, 12, 1.0, SelectorSpec(lambda_per_v=0.02), (4.0, 9.0)),
    "minus_3V_bulk_biased": (16, 16, 1.0, SelectorSpec(v_bulk_v=-1.35), (-3.0, 3.0)),
    "forward_junctions": (8, 8, 1.0, SelectorSpec(), (-1.35, 0.2)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_block_equals_sparse_lu(case):
    rows, cols, r_wire, sel, (lo, hi) = CASES[case]
    spec = TileSpec.uniform_wires(rows, cols, r_wire, cell="1t1r", selector=sel)
    rng, g = random_tile(rows, cols, len(case))
    v = rng.uniform(lo, hi, (7, rows))
    new = TileSurrogate(spec, g, "nonlinear")
    out = new.read(v)
    ref = TileSurrogate(spec, g, "nonlinear", method="sparse_lu").read(v)
    assert rel_max(out, ref) <= 1e-9
    assert new._block.stats.iterations > 0       # the block solver answered, not its fallback
    assert rel_max(new.read(v[3]), ref[3]) <= 1e-9          # one vector (rows,) → (cols,)


def test_strongly_forward_biased_junctions_fall_back_to_sparse_lu():
    """Word lines at −3 V with the bulk at ground: tens of mA through the drain junctions; the
    linearized cells of the block iteration diverge there and the reference answers."""
    spec = TileSpec.uniform_wires(16, 16, 1.0, cell="1t1r")
    rng, g = random_tile(16, 16, 3, open_cells=0)
    v = -3.0 * rng.uniform(0.5, 1.0, (2, 16))
    out = TileSurrogate(spec, g, "nonlinear").read(v)
    assert rel_max(out, TileSurrogate(spec, g, "nonlinear", method="sparse_lu").read(v)) <= 1e-9


def test_read_many_equals_tile_by_tile():
    spec, g, v = three_1t1r_tiles()
    out = read_many(spec, g, v)
    for k in range(3):
        ref = TileSurrogate(spec, g[k], "nonlinear", method="sparse_lu").read(v[k])
        assert rel_max(out[k], ref) <= 1e-9
    with pytest.raises(ValueError, match="tiles"):
        read_many(spec, g, v[:2])


def test_float64_corrections_give_the_same_fixed_point():
    spec = TileSpec.uniform_wires(12, 12, 2.5, cell="1t1r")
    rng, g = random_tile(12, 12, 4)
    v = rng.uniform(0, 0.2, (1, 6, 12))
    outs = [BlockSolver(spec, g[None], effective_cell_conductance(spec, g)[None], dtype=dt).read(v)
            for dt in (torch.float32, torch.float64)]
    assert rel_max(outs[0].numpy(), outs[1].numpy()) <= 1e-11


def test_line_and_block_solvers_equal_ngspice_16x16():
    spec = TileSpec.uniform_wires(16, 16, 1.0, cell="1t1r")
    rng, g = random_tile(16, 16, 16)
    vs = rng.uniform(0, 0.2, (3, 16))
    vs[2] = rng.uniform(-0.2, 0.2, 16)
    ref = np.array([r.sense_currents_a for r in
                    solve_many(spec, list(np.repeat(g[None], 3, 0)), list(vs), backend="ngspice",
                               cache_dir=None, progress=False)])
    sur = TileSurrogate(spec, g, "nonlinear")
    assert rel_max(sur.read(vs), ref) <= 1e-6
    # the compiled line solver answered (no vector left to the torch iteration), and the torch
    # iteration alone agrees with SPICE as well
    assert sur._block.lines is not None and sur._block.stats.torch_vectors == 0
    torch_only = BlockSolver(spec, g[None], effective_cell_conductance(spec, g)[None],
                             linear="block").read(vs[None])[0].numpy()
    assert rel_max(torch_only, ref) <= 1e-6


def test_bad_method():
    with pytest.raises(ValueError, match="method"):
        TileSurrogate(TileSpec(rows=2, cols=2), np.full((2, 2), 1e-3), "nonlinear", method="lu")


# -- the compiled line solver (nonlinear_lines, nonlinear_kernel) ---------------------------------
def test_nodal_apply_is_the_network_matrix():
    from spicecross.surrogate.nonlinear_lines import nodal_apply

    spec = TileSpec(rows=7, cols=5, cell="1t1r", r_wire_wl_ohm=0.7, r_wire_bl_ohm=1.3,
                    r_driver_ohm=4.0, r_sense_ohm=2.0)
    rng, g = random_tile(7, 5, 1)
    x = rng.normal(size=(2, 7, 5))
    ref = build_network(spec, g).A @ x.reshape(-1)
    out = nodal_apply(spec, g, x[0], x[1])
    assert rel_max(np.concatenate([o.ravel() for o in out]), ref) < 1e-13


def test_kernel_exponential_and_junctions_are_the_cell_model():
    from spicecross.surrogate.cells import junction_current
    from spicecross.surrogate.nonlinear_kernel import exp_f64, junction_a

    z = np.concatenate([np.linspace(-700, 709, 2001), np.linspace(-3, 12, 1001)])
    assert np.max(np.abs(np.array([exp_f64(x) for x in z]) / np.exp(z) - 1)) < 5e-16
    sel = SelectorSpec()
    x = np.linspace(-1.0, 0.4, 701)
    ref = junction_current(sel, x)[0]
    out = np.array([junction_a(t, sel.is_a, sel.vt_v) for t in x])
    assert np.max(np.abs(out - ref)) <= 1e-15 * np.max(np.abs(ref))


LINE_CASES = {   # name: (rows, cols, r_wl, r_bl, r_driver, r_sense, input range (V))
    "64x64_0.1ohm": (64, 64, 0.1, 0.1, 0.0, 0.0, (0.0, 0.2)),
    "16x16_2.5ohm": (16, 16, 2.5, 2.5, 0.0, 0.0, (0.0, 0.2)),
    "12x20_drivers": (12, 20, 1.0, 2.0, 5.0, 1.0, (-0.2, 0.2)),
    "3x1": (3, 1, 1.0, 1.0, 0.0, 0.0, (0.0, 0.2)),
}


@pytest.mark.parametrize("case", list(LINE_CASES))
def test_line_solver_equals_the_block_solver(case):
    rows, cols, r_wl, r_bl, r_drv, r_sense, (lo, hi) = LINE_CASES[case]
    spec = TileSpec(rows=rows, cols=cols, cell="1t1r", r_wire_wl_ohm=r_wl, r_wire_bl_ohm=r_bl,
                    r_driver_ohm=r_drv, r_sense_ohm=r_sense)
    rng, g = random_tile(rows, cols, rows * cols, open_cells=min(3, rows * cols - 1))
    v = rng.uniform(lo, hi, (1, 9, rows))
    g_lin = effective_cell_conductance(spec, g)[None]
    lines = BlockSolver(spec, g[None], g_lin, linear="lines")
    out = lines.read(v).numpy()
    ref = BlockSolver(spec, g[None], g_lin, linear="block", dtype=torch.float64).read(v).numpy()
    assert lines.stats.torch_vectors == 0 and lines.stats.iterations > 0
    assert rel_max(out, ref) <= 1e-9


def test_line_solver_linearizes_the_cells_once():
    """64×64, 0.1 Ω wires, 0.2 V reads: with the line solves refactored for the cells'
    Jacobian after the first iteration the contraction is ≈ 0.004, so every vector stops within
    5 iterations (6 with A_lin's cells throughout), at the block solver's answers."""
    spec = TileSpec.uniform_wires(64, 64, 0.1, cell="1t1r")
    rng, g = random_tile(64, 64, 7)
    v = rng.uniform(0.0, 0.2, (1, 6, 64))
    g_lin = effective_cell_conductance(spec, g)[None]
    lines = BlockSolver(spec, g[None], g_lin, linear="lines")
    out = lines.read(v).numpy()
    assert lines.stats.torch_vectors == 0 and lines.stats.iterations <= 5
    ref = BlockSolver(spec, g[None], g_lin, linear="block", dtype=torch.float64).read(v).numpy()
    assert rel_max(out, ref) <= 1e-9


def test_line_solver_leaves_saturated_cells_to_the_torch_iteration():
    """3 V reads saturate selectors: the closed form does not hold there, so those vectors go to
    the torch iteration; the answers are the sparse-LU fixed point's."""
    spec = TileSpec.uniform_wires(16, 16, 1.0, cell="1t1r")
    rng, g = random_tile(16, 16, 5)
    v = rng.uniform(0.0, 0.2, (6, 16))
    v[[1, 4]] = rng.uniform(2.0, 3.0, (2, 16))
    sur = TileSurrogate(spec, g, "nonlinear")
    out = sur.read(v)
    assert sur._block.lines is not None and sur._block.stats.torch_vectors >= 2
    ref = TileSurrogate(spec, g, "nonlinear", method="sparse_lu").read(v)
    assert rel_max(out, ref) <= 1e-9


def test_line_solver_needs_lambda_zero():
    spec = TileSpec.uniform_wires(4, 4, 1.0, cell="1t1r", selector=SelectorSpec(lambda_per_v=0.02))
    g = np.full((1, 4, 4), 1e-3)
    assert BlockSolver(spec, g, g).lines is None                   # auto: the torch iteration
    with pytest.raises(ValueError, match="lambda"):
        BlockSolver(spec, g, g, linear="lines")
    with pytest.raises(ValueError, match="linear part"):
        BlockSolver(spec, g, g, linear="dense")


def test_line_solver_gates_bit_lines_start_and_state_are_the_torch_iterations():
    """Per-vector gates and bit-line drives, several tiles, a warm start from last_state: the
    line solver's currents and node voltages (a, b, m) are the torch iteration's."""
    spec = TileSpec(rows=10, cols=7, cell="1t1r", r_wire_wl_ohm=1.0, r_wire_bl_ohm=1.5,
                    r_driver_ohm=2.0, r_sense_ohm=3.0)
    rng = np.random.default_rng(3)
    g = rng.uniform(1 / 2500, 1 / 100, (2, 10, 7))
    g[1, 3, :] = 0.0
    v = torch.as_tensor(rng.uniform(0.0, 0.6, (2, 5, 10)))
    vg = torch.as_tensor(rng.uniform(1.2, 2.5, (2, 5, 10)))
    vb = torch.as_tensor(rng.uniform(0.0, 0.1, (2, 5, 7)))
    g_lin = effective_cell_conductance(spec, g)
    solvers = [BlockSolver(spec, g, g_lin, linear=lin, dtype=torch.float64, tol_v=1e-12)
               for lin in ("lines", "block")]
    outs = [s_.read(v, vg, vb) for s_ in solvers]
    assert solvers[0].stats.torch_vectors == 0
    assert rel_max(outs[0].numpy(), outs[1].numpy()) <= 1e-9
    for x, y in zip(*(s_.last_state for s_ in solvers)):
        assert x.shape == y.shape == (2, 10, 5, 7)
        assert np.max(np.abs(x.numpy() - y.numpy())) <= 1e-10
    again = solvers[0].read(v * 1.01, vg, vb, start=solvers[0].last_state)
    warm_iterations = solvers[0].stats.iterations
    cold = solvers[1].read(v * 1.01, vg, vb)
    assert rel_max(again.numpy(), cold.numpy()) <= 1e-9
    solvers[0].read(v * 1.01, vg, vb)
    assert warm_iterations < solvers[0].stats.iterations


def test_line_solver_keeps_only_the_last_chunk_as_state():
    spec = TileSpec.uniform_wires(6, 6, 1.0, cell="1t1r")
    rng, g = random_tile(6, 6, 8)
    v = rng.uniform(0, 0.2, (1, 11, 6))
    s_ = BlockSolver(spec, g[None], effective_cell_conductance(spec, g)[None], chunk=4)
    s_.read(v)
    ref = BlockSolver(spec, g[None], effective_cell_conductance(spec, g)[None], linear="block",
                      dtype=torch.float64)
    ref.read(v[:, 8:])
    for x, y in zip(s_.last_state, ref.last_state):
        assert x.shape == (1, 6, 3, 6) and np.max(np.abs(x.numpy() - y.numpy())) <= 1e-10


def test_compile_kernel_reads_through_the_line_solver():
    """``make setup``'s warm-up compiles (or loads) the kernel through a read the line solver
    answers, not the torch fallback."""
    from spicecross.surrogate.nonlinear_lines import compile_kernel

    assert compile_kernel() is True
