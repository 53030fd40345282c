"""The tile surrogate against ngspice/VACASK on the same tiles."""
import numpy as np
import pytest
import torch

from spicecross.circuit.tile import SelectorSpec, TileSpec
from spicecross.spice.nodal import nodal_sense_currents
from spicecross.spice.solve import solve_many, solve_tile
from spicecross.surrogate.network import sparse_transfer_matrix
from spicecross.surrogate.tile_model import TileSurrogate
from spicecross.surrogate.transfer import transfer_matrices


def rel_max(a, b):
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


def rel_rms(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - b) ** 2)) / np.sqrt(np.mean(np.asarray(b) ** 2)))


@pytest.mark.parametrize("rows,cols", [(8, 8), (16, 16), (32, 32), (24, 40), (64, 64)])
def test_linear_mode_equals_ngspice_on_passive_tiles(rows, cols):
    rng = np.random.default_rng(rows * 1000 + cols)
    spec = TileSpec(rows=rows, cols=cols, r_wire_wl_ohm=1.5, r_wire_bl_ohm=2.5, r_driver_ohm=4.0,
                    r_sense_ohm=1.0)
    g = rng.uniform(1 / 2500, 1 / 100, (rows, cols))
    v = rng.uniform(0, 0.2, rows)
    ref = solve_tile(spec, g, v, backend="ngspice", cache_dir=None)
    assert ref.ok, ref.error
    sur = TileSurrogate(spec, g, "linear")
    assert rel_max(sur.read(v), ref.sense_currents_a) <= 1e-6
    # and the wires matter here: ideal is visibly off
    assert rel_max(TileSurrogate(spec, g, "ideal").read(v), ref.sense_currents_a) > 1e-3


def test_recursion_equals_sparse_lu_and_batches():
    rng = np.random.default_rng(2)
    spec = TileSpec.uniform_wires(12, 20, 3.0, r_driver_ohm=2.0)
    gs = rng.uniform(1e-5, 1e-2, (3, 12, 20))
    gs[0, 3, :] = 0.0          # an open row of cells
    batched = transfer_matrices(spec, gs).numpy()
    for k in range(3):
        assert rel_max(batched[k], sparse_transfer_matrix(spec, gs[k])) < 1e-10
    v = rng.uniform(-0.2, 0.2, 12)     # bipolar inputs are fine for a linear network
    assert rel_max(batched[1] @ v, nodal_sense_currents(spec, gs[1], v)) < 1e-10


@pytest.mark.parametrize("n", [8, 16])
def test_nonlinear_1t1r_equals_ngspice(n):
    rng = np.random.default_rng(n)
    spec = TileSpec.uniform_wires(n, n, 1.0, cell="1t1r")
    g = rng.uniform(1 / 2500, 1 / 100, (n, n))
    vs = rng.uniform(0, 0.2, (3, n))
    vs[2] = rng.uniform(-0.2, 0.2, n)   # a bipolar read: selectors conduct in reverse
    ref = np.array([r.sense_currents_a for r in
                    solve_many(spec, list(np.repeat(g[None], 3, 0)), list(vs), backend="ngspice",
                               cache_dir=None, progress=False)])
    sur = TileSurrogate(spec, g, "nonlinear")
    assert rel_max(sur.read(vs), ref) < 1e-6
    assert sur.stats.iterations < 30
    # the uncalibrated linear mode is within a few percent; the ideal mode (same cells, no
    # wires) misses the IR drop, and the device alone (no selector) is far off
    lin = rel_rms(TileSurrogate(spec, g, "linear").read(vs), ref)
    assert lin < 0.05
    assert rel_rms(TileSurrogate(spec, g, "ideal").read(vs), ref) > 2 * lin
    assert rel_rms(vs @ g, ref) > 0.3


def test_nonlinear_wide_selector_tends_to_passive():
    rng = np.random.default_rng(5)
    spec = TileSpec.uniform_wires(10, 10, 1.0, cell="1t1r", selector=SelectorSpec(w_m=0.4))
    g = rng.uniform(1 / 2500, 1 / 100, (10, 10))
    v = rng.uniform(0, 0.2, 10)
    passive = nodal_sense_currents(spec.with_(cell="0t1r"), g, v)
    assert rel_max(TileSurrogate(spec, g, "nonlinear").read(v), passive) < 1e-4


def test_bad_mode_and_inputs():
    spec = TileSpec(rows=4, cols=4)
    with pytest.raises(ValueError, match="mode"):
        TileSurrogate(spec, np.full((4, 4), 1e-3), "exact")
    with pytest.raises(ValueError, match=r"rows = 4"):
        TileSurrogate(spec, np.full((4, 4), 1e-3)).read(np.zeros(5))
    with pytest.raises(ValueError, match="nan"):
        TileSurrogate(spec, np.full((4, 4), 1e-3)).read(np.array([0, np.nan, 0, 0]))
