"""The chains' explicit wire voltages and the Chebyshev linear part of the nonlinear mode, against
the nodal network, the dense block solve and the sparse-LU fixed point."""
import math

import numpy as np
import pytest
import torch

from spicecross.circuit.tile import SelectorSpec, TileSpec
from spicecross.surrogate.mapping import effective_cell_conductance
from spicecross.surrogate.network import build_network
from spicecross.surrogate.nonlinear import (BlockNetwork, BlockSolver, block_network, linear_network,
                                            read_many)
from spicecross.surrogate.nonlinear_chains import (ChainNetwork, bit_line_rises, chain_resistances,
                                                   chebyshev_steps, contraction_bound,
                                                   word_line_drops)
from spicecross.surrogate.tile_model import TileSurrogate
from conftest import three_1t1r_tiles


def rel_max(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


SPEC = TileSpec(rows=7, cols=5, cell="1t1r", r_wire_wl_ohm=0.7, r_wire_bl_ohm=1.3,
                r_driver_ohm=4.0, r_sense_ohm=2.0)


def test_chain_voltages_solve_the_wire_network():
    """With the cells open the nodal network is the two chain forests alone: injecting −f into
    word-line nodes gives −drops, f into bit-line nodes the rises."""
    rng = np.random.default_rng(0)
    f = rng.normal(size=(3, SPEC.rows, SPEC.cols)) * 1e-3
    net = build_network(SPEC, np.zeros((SPEC.rows, SPEC.cols)))
    lu = net.factorize()
    n = net.n_cells
    r = np.zeros((2 * n, 3))
    r[:n] = -f.reshape(3, -1).T
    r[n:] = f.reshape(3, -1).T
    x = lu.solve(r).T.reshape(3, 2, SPEC.rows, SPEC.cols)
    r_in, r_wl, r_bl, r_out = chain_resistances(SPEC)
    ft = torch.as_tensor(f)
    assert rel_max(word_line_drops(ft, r_in, r_wl).numpy(), -x[:, 0]) < 1e-12
    rises = bit_line_rises(ft[None].transpose(1, 2), r_bl, r_out)[0].transpose(0, 1).numpy()
    assert rel_max(rises, x[:, 1]) < 1e-12


def dense_chain_matrix(spec):
    """W = W_wl + W_bl (cells × cells, Ω) from the chain voltages of unit currents."""
    r_in, r_wl, r_bl, r_out = chain_resistances(spec)
    n = spec.rows * spec.cols
    e = torch.eye(n, dtype=torch.float64).reshape(n, spec.rows, spec.cols)
    w = word_line_drops(e, r_in, r_wl) + bit_line_rises(e, r_bl, r_out)
    return w.reshape(n, n).T.numpy()


def test_contraction_bound_bounds_the_spectral_radius():
    rng = np.random.default_rng(1)
    for scale in (1e-4, 1e-2, 1.0):
        g = rng.uniform(0, scale, (2, SPEC.rows, SPEC.cols))
        g[0, 3, 2] = 0.0
        mu = contraction_bound(SPEC, torch.as_tensor(g)).numpy()
        w = dense_chain_matrix(SPEC)
        for t in range(2):
            rho = max(abs(np.linalg.eigvals(w @ np.diag(g[t].ravel()))))
            assert rho <= mu[t] * (1 + 1e-12)
            assert mu[t] <= 4 * rho          # a bound, not a wild one


def test_chebyshev_steps_meet_their_reduction():
    assert chebyshev_steps(0.0) == 1
    for mu in (0.05, 1.0, 30.0):
        for red in (1e-1, 1e-3):
            k = chebyshev_steps(mu, red)
            sigma = (2 + mu) / mu
            assert 1 / math.cosh(k * math.acosh(sigma)) <= red
            assert k == 1 or 1 / math.cosh((k - 1) * math.acosh(sigma)) > red
    assert chebyshev_steps(30.0) > chebyshev_steps(1.0)


@pytest.mark.parametrize("rows,cols,r_wire", [(16, 16, 0.1), (12, 20, 2.5), (64, 64, 0.1)])
def test_chain_network_approaches_the_block_solve(rows, cols, r_wire):
    spec = TileSpec(rows=rows, cols=cols, cell="1t1r", r_wire_wl_ohm=r_wire,
                    r_wire_bl_ohm=1.5 * r_wire, r_driver_ohm=2.0, r_sense_ohm=1.0)
    rng = np.random.default_rng(rows)
    g = effective_cell_conductance(spec, rng.uniform(1 / 2500, 1 / 100, (rows, cols)))[None]
    g[0, 1, 2] = 0.0
    r_w, r_b = (torch.as_tensor(rng.normal(size=(1, rows, 3, cols))) for _ in range(2))
    ref = block_network(spec, g, torch.float64).solve(r_w, r_b)
    errs = []
    for red in (1e-2, 1e-10):
        out = ChainNetwork(spec, g, torch.float64, reduction=red).solve(r_w, r_b)
        errs.append(max(rel_max(o.numpy(), x.numpy()) for o, x in zip(out, ref)))
    assert errs[1] < 1e-8
    assert errs[1] < errs[0] < 0.1


CASES = {   # name: (rows, cols, r_wire (Ω), selector, input range (V))
    "16_0.1ohm_read": (16, 16, 0.1, SelectorSpec(), (0.0, 0.2)),
    "16_2.5ohm_read": (16, 16, 2.5, SelectorSpec(), (0.0, 0.2)),
    "16_0.1ohm_bipolar": (16, 16, 0.1, SelectorSpec(), (-0.2, 0.2)),
    "16_1ohm_plus_3V": (16, 16, 1.0, SelectorSpec(), (0.0, 3.0)),
    "16_1ohm_forward_junctions": (16, 16, 1.0, SelectorSpec(), (-1.35, 0.2)),
    "16_1ohm_minus_3V_bulk_biased": (16, 16, 1.0, SelectorSpec(v_bulk_v=-1.35), (-3.0, 3.0)),
    "64_0.1ohm_read": (64, 64, 0.1, SelectorSpec(), (0.0, 0.2)),
    "64_2.5ohm_read": (64, 64, 2.5, SelectorSpec(), (0.0, 0.2)),
    "64_0.1ohm_bipolar_saturating": (64, 64, 0.1, SelectorSpec(lambda_per_v=0.02), (-0.5, 2.5)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_chains_equal_block_and_sparse_lu(case):
    rows, cols, r_wire, sel, (lo, hi) = CASES[case]
    spec = TileSpec.uniform_wires(rows, cols, r_wire, cell="1t1r", selector=sel)
    rng = np.random.default_rng(len(case))
    g = rng.uniform(1 / 2500, 1 / 100, (rows, cols))
    g.flat[rng.choice(rows * cols, 3, replace=False)] = 0.0
    v = rng.uniform(lo, hi, (1, 5, rows))
    g_lin = effective_cell_conductance(spec, g)
    chains = BlockSolver(spec, g[None], g_lin[None], linear="chains")
    assert isinstance(chains.net, ChainNetwork)
    out = chains.read(v)[0].numpy()
    block = BlockSolver(spec, g[None], g_lin[None], linear="block").read(v)[0].numpy()
    ref = TileSurrogate(spec, g, "nonlinear", method="sparse_lu").read(v[0])
    assert rel_max(out, ref) <= 1e-9
    assert rel_max(out, block) <= 1e-9


def test_auto_takes_the_chains_only_where_they_are_cheaper():
    """Weak cells on long word lines: one Chebyshev step, cheaper than the block solve's
    4·cols multiply-adds per cell; the 64×64 read tile of the benchmarks stays on the blocks."""
    rng = np.random.default_rng(5)
    wide = TileSpec.uniform_wires(8, 256, 0.1, cell="1t1r")
    g_weak = rng.uniform(1e-6, 1e-5, (8, 256))
    net = linear_network(wide, effective_cell_conductance(wide, g_weak)[None])
    assert isinstance(net, ChainNetwork) and net.steps == 1
    v = rng.uniform(0, 0.2, (4, 8))
    sur = TileSurrogate(wide, g_weak, "nonlinear")
    out = sur.read(v)
    assert isinstance(sur._block.net, ChainNetwork)
    assert rel_max(out, TileSurrogate(wide, g_weak, "nonlinear", method="sparse_lu").read(v)) <= 1e-9

    tile = TileSpec.uniform_wires(64, 64, 0.1, cell="1t1r")
    g = rng.uniform(1 / 2500, 1 / 100, (64, 64))
    assert isinstance(linear_network(tile, effective_cell_conductance(tile, g)[None]), BlockNetwork)
    assert isinstance(linear_network(wide, effective_cell_conductance(wide, g_weak)[None],
                                     linear="block"), BlockNetwork)


def test_bad_linear_part():
    with pytest.raises(ValueError, match="'dense'"):
        linear_network(SPEC, np.full((1, SPEC.rows, SPEC.cols), 1e-3), linear="dense")


def test_read_many_with_chains_equals_blocks():
    """Several tiles at once (one with an open word line) through the chains."""
    spec, g, v = three_1t1r_tiles()
    assert rel_max(read_many(spec, g, v, linear="chains"), read_many(spec, g, v, linear="block")) <= 1e-9
