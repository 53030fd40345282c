"""The ``polynomial`` read mode: each 1T1R cell's own level-1 I–V as a cubic in its word-line
voltage, on the exact wire network of its chord conductance. Checked against ngspice and VACASK
on the same tiles in the voltage ranges the network uses (0.2 V default, 0.4 V = 2×), and
against the exact ``nonlinear`` mode without wires (where only the fit remains)."""
import numpy as np
import pytest
import torch

from spicecross.circuit.tile import TileSpec
from spicecross.nn.analog import AnalogConv2d, AnalogLinear
from spicecross.spice.solve import solve_reads
from spicecross.surrogate.cell_poly import cell_polynomials, fit_voltages_v
from spicecross.surrogate.config import AnalogConfig
from spicecross.surrogate.tile_model import TileSurrogate


def tile(n, r_wire_ohm, seed=0):
    spec = TileSpec.uniform_wires(n, n, r_wire_ohm, cell="1t1r")
    rng = np.random.default_rng(seed)
    return spec, rng.uniform(1 / 2500, 1 / 100, (n, n))   # pt_hf_ti's device range


def rel_fs(a, b):
    """Largest difference relative to the largest reference current."""
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_without_wires_only_the_fit_remains():
    spec, g = tile(16, 0.0)
    v = np.random.default_rng(1).uniform(0, 0.2, (40, 16))
    exact = TileSurrogate(spec, g, "nonlinear").read(v)
    poly = TileSurrogate(spec, g, "polynomial", v_range_v=(0.0, 0.2)).read(v)
    assert rel_fs(poly, exact) < 2e-5
    _, _, residual = cell_polynomials(spec, g, 0.0, 0.2)
    assert residual < 2e-5


@pytest.mark.parametrize("v_fs", [0.2, 0.4], ids=["default", "2x"])
@pytest.mark.parametrize("backend", ["ngspice", "vacask"])
def test_polynomial_matches_spice_with_wires(backend, v_fs):
    """32×32 1T1R, 0.1 Ω wires, devices uniform over the whole range (a harsher tile than the
    network's, whose weights are mostly small): the polynomial mode is within 0.4 % of full
    scale of SPICE (what is left is the wire drop's effect on the selector's nonlinearity, a
    second-order term it leaves out: ≈ 2e-5 without wires), the linear mode with the level-1
    on-conductance ≥ 5× further off."""
    spec, g = tile(32, 0.1)
    rng = np.random.default_rng(2)
    v = rng.uniform(0, v_fs, (12, 32)) * (rng.random((12, 32)) < 0.7)
    ref = solve_reads(spec, g, v, backend=backend, cache_dir=None)
    assert ref.ok, ref.error
    poly = TileSurrogate(spec, g, "polynomial", v_range_v=(0.0, v_fs)).read(v)
    lin = TileSurrogate(spec, g, "linear").read(v)
    err_poly, err_lin = rel_fs(poly, ref.currents_a), rel_fs(lin, ref.currents_a)
    assert err_poly < 4e-3, err_poly
    assert err_lin > 5 * err_poly, (err_lin, err_poly)


def test_zero_t_one_r_polynomial_is_linear():
    spec = TileSpec.uniform_wires(8, 8, 0.5)
    g = np.random.default_rng(3).uniform(1 / 2500, 1 / 100, (8, 8))
    v = np.random.default_rng(4).uniform(0, 0.2, (5, 8))
    np.testing.assert_array_equal(TileSurrogate(spec, g, "polynomial").read(v),
                                  TileSurrogate(spec, g, "linear").read(v))


def test_inputs_outside_the_fit_range_are_refused():
    spec, g = tile(4, 0.1)
    with pytest.raises(ValueError, match=r"0\.5 V is outside the polynomial mode's fit range"):
        TileSurrogate(spec, g, "polynomial", v_range_v=(0.0, 0.2)).read(np.full(4, 0.5))
    with pytest.raises(ValueError, match="read range"):
        fit_voltages_v(0.1, 0.2)
    # the DAC's full scale in float32 (0.2 V → 0.200000003 V) is inside; 0.1 % beyond is not
    sur = TileSurrogate(spec, g, "polynomial", v_range_v=(0.0, 0.2))
    sur.read(np.full(4, float(np.float32(0.2))))
    with pytest.raises(ValueError, match="outside the polynomial mode's fit range"):
        sur.read(np.full(4, 0.2 * 1.001))


def _config(**kw):
    return AnalogConfig.build(cell="1t1r", tile_rows=8, tile_cols=8, mode="polynomial", **kw)


@pytest.mark.parametrize("scheme", ["two-phase", "bipolar"])
def test_layers_read_like_their_tiles(scheme):
    """The fused per-layer read (bmm / conv with v^k terms) equals per-tile polynomial reads."""
    torch.manual_seed(0)
    cfg = _config(read_scheme=scheme)
    lin = AnalogLinear(torch.nn.Linear(20, 11), cfg)
    arr = lin.array
    lo = -0.2 if scheme == "bipolar" else 0.0
    v = torch.empty(6, 20, dtype=torch.float64).uniform_(lo, 0.2)
    fused = lin._tile_currents(v)
    for r in range(arr.n_row_tiles):
        rows = arr.tile_rows_of(r)
        vt = np.zeros((6, 8))
        vt[:, :rows.stop - rows.start] = v[:, rows].numpy()
        per_tile = np.concatenate([np.subtract(*arr.read_tile(r, c, vt))
                                   for c in range(arr.n_col_tiles)], axis=1)[:, :11]
        np.testing.assert_allclose(fused[r].numpy(), per_tile, rtol=0, atol=1e-12 * np.abs(per_tile).max())
    conv = AnalogConv2d(torch.nn.Conv2d(2, 5, 3, padding=1), cfg)
    x = torch.empty(2, 2, 5, 5, dtype=torch.float64).uniform_(lo, 0.2)
    fused = conv._tile_currents(x)
    cols = torch.nn.functional.unfold(x, 3, padding=1).transpose(1, 2).reshape(-1, 18).numpy()
    for r in range(conv.array.n_row_tiles):
        rows = conv.array.tile_rows_of(r)
        want = conv.array.row_tile_currents(cols[:, rows], r)
        got = fused[r].reshape(2, 5, 25).transpose(1, 2).reshape(-1, 5).numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())


def test_grid_interpolation_equals_the_per_cell_fit(monkeypatch):
    """Many cells are fitted on a log grid of device conductances and interpolated; the cell
    currents agree with one fit per cell to ≤ 1e-7 of the largest current."""
    import spicecross.surrogate.cell_poly as cp

    spec = TileSpec(rows=64, cols=64, cell="1t1r")
    g = np.random.default_rng(5).uniform(1 / 2500, 1 / 100, (3, 64, 64))
    g[0, 0, :4] = 0.0                                   # cells left out of the array
    grid = cp.cell_polynomials(spec, g, 0.0, 0.2)
    monkeypatch.setattr(cp, "GRID_POINTS", g.size + 1)
    direct = cp.cell_polynomials(spec, g, 0.0, 0.2)
    v = np.linspace(0.0, 0.2, 9)[:, None, None, None]

    def currents(chord, poly, _):
        return chord * v + sum(poly[k] * v ** (k + 1) for k in range(poly.shape[0]))

    a, b = currents(*grid), currents(*direct)
    assert float(np.abs(a - b).max() / np.abs(b).max()) < 1e-7
    assert np.all(a[:, 0, 0, :4] == 0.0)
