"""Programming VTEAM tiles: the V/2 and V/3 half-select schemes (0T1R) and gate-selected writes
(1T1R) as transients in ngspice (behavioural VTEAM) and VACASK (Verilog-A VTEAM) and in the
dynamic surrogate, write-verify, cycle-to-cycle variability and the ``spicecross program`` CLI."""
import json

import numpy as np
import pytest
from conftest import assert_plot_png

from spicecross.circuit.tile import TileSpec
from spicecross.cli import main
from spicecross.devices.vteam import get_parameter_set, resistance_at_state_ohm
from spicecross.spice.programming import (line_voltages, make_writer, open_loop_train,
                                          program_tile, write_train)
from spicecross.spice.tile_transient import PulseTrain, run_tile_transient
from spicecross.surrogate.dynamic import DynamicTileSurrogate
from spicecross.surrogate.programming import WRITE_STEPPING

P = get_parameter_set("pt_hf_ti")
SIMS = ("ngspice", "vacask")
G_RANGE = 1 / P.r_on_ohm - 1 / P.r_off_ohm
# pt_hf_ti: RESET (v > 0.5 V) at ~7 ranges/s at 1.4 V, SET (v < −0.53 V) at ~3.5e10 ranges/s
# at −1.4 V: the widths that move a selected cell by ~0.08 and ~0.1 of the range.
PULSES = {"reset": (1.4, 10e-3), "set": (-1.4, 3e-12)}


pytestmark = pytest.mark.usefixtures("module_osdi_cache")


def conductance(w):
    return 1.0 / resistance_at_state_ohm(w, P.r_on_ohm, P.r_off_ohm)


def start(rows, cols, seed=1):
    """Initial states away from the bounds, and their conductances (S)."""
    w0 = np.random.default_rng(seed).uniform(0.3, 0.7, (rows, cols))
    return w0, conductance(w0)


# -- the schemes' line voltages ---------------------------------------------------------------
def test_line_voltages_of_the_schemes():
    spec = TileSpec(rows=3, cols=4)
    wl, bl, gates = line_voltages(spec, "v2", 1, 2, 1.2)
    cell = wl[:, None] - bl[None, :]
    assert gates is None and cell[1, 2] == 1.2
    assert np.allclose(cell[1, [0, 1, 3]], 0.6) and np.allclose(cell[[0, 2], 2], 0.6)
    assert np.allclose(np.delete(np.delete(cell, 1, 0), 2, 1), 0.0)
    wl, bl, _ = line_voltages(spec, "v3", 1, 2, -1.2)
    cell = wl[:, None] - bl[None, :]
    assert cell[1, 2] == -1.2 and np.allclose(cell[1, [0, 1, 3]], -0.4)
    assert np.allclose(cell[[0, 2], 2], -0.4)
    assert np.allclose(np.delete(np.delete(cell, 1, 0), 2, 1), 0.4)
    one = TileSpec(rows=3, cols=4, cell="1t1r")
    for v in (1.2, -1.2):
        wl, bl, gates = line_voltages(one, "gate", 1, 2, v, v_gate_v=2.5)
        cell = wl[:, None] - bl[None, :]
        assert cell[1, 2] == v and np.allclose(cell[1, [0, 1, 3]], 0.0)
        assert np.all(wl >= 0) and np.all(bl >= 0) and list(gates) == [0.0, 2.5, 0.0]
    with pytest.raises(ValueError, match="writes 1t1r tiles"):
        line_voltages(spec, "gate", 0, 0, 1.0)
    with pytest.raises(ValueError, match="writes 0t1r tiles"):
        line_voltages(one, "v2", 0, 0, 1.0)
    with pytest.raises(ValueError, match="scheme must be one of"):
        line_voltages(spec, "v4", 0, 0, 1.0)
    with pytest.raises(ValueError, match=r"cell \(3, 0\) is outside"):
        line_voltages(spec, "v2", 3, 0, 1.0)
    tr = write_train(spec, "v3", 0, 1, 1.5, 1e-3)
    assert tr.n_pulses == 1 and np.allclose(tr.bitline_plateaus_v, [[1.0, 0.0, 1.0, 1.0]])


@pytest.mark.parametrize("rows, cols", [(4, 4), (8, 8), (1, 5), (5, 1), (6, 3), (11, 11)])
def test_cell_voltages_with_driven_bit_lines_dense_and_block(rows, cols):
    """The wire-network solve with the bit lines driven at their sense ends: the dense and the
    block-Cholesky solves agree, and both satisfy Kirchhoff's current law at the sense ends
    (the sense current is what the cells of that column put in, to the wires' rounding)."""
    import torch

    from spicecross.surrogate.dynamic import DENSE_MAX_CELLS, cell_voltages

    spec = TileSpec(rows=rows, cols=cols, r_driver_ohm=2.0, r_sense_ohm=3.0)
    rng = np.random.default_rng(rows * cols)
    g = torch.as_tensor(conductance(rng.uniform(0, 1, (2, rows, cols))))
    v = torch.as_tensor(rng.uniform(-1, 1, (2, rows)))
    v_bl = torch.as_tensor(rng.uniform(-1, 1, (2, cols)))
    vc_b, i_b = cell_voltages(spec, g, v, v_bl, method="block")
    vc_d, i_d = cell_voltages(spec, g, v, v_bl, method="dense")
    assert torch.allclose(vc_b, vc_d, rtol=0, atol=1e-12)
    assert torch.allclose(i_b, i_d, rtol=1e-9, atol=1e-15)
    assert torch.allclose(i_b, (g * vc_b).sum(dim=1), rtol=1e-9, atol=1e-15)
    auto = cell_voltages(spec, g, v, v_bl)[0]
    assert torch.equal(auto, vc_d if rows * cols <= DENSE_MAX_CELLS else vc_b)
    with pytest.raises(ValueError, match="method must be"):
        cell_voltages(spec, g, v, v_bl, method="lu")


# -- V/2 disturbs half-selected cells, V/3 does not: SPICE and the surrogate ----------------------
@pytest.mark.parametrize("kind, n", [("reset", 4), ("set", 4), ("reset", 8)])
def test_v2_disturbs_half_selected_cells_and_v3_less(kind, n, tmp_path):
    """One pulse to each diagonal cell of an n×n tile with wires (one train, one SPICE run per
    scheme and simulator); the off-diagonal cells are never targeted."""
    spec = TileSpec(rows=n, cols=n)
    w0, g = start(n, n)
    v, width = PULSES[kind]
    cells = [(i, i) for i in range(n)]
    off = ~np.eye(n, dtype=bool)
    disturb = {}
    for scheme in ("v2", "v3"):
        train = open_loop_train(spec, scheme, cells, v, width)
        dyn = DynamicTileSurrogate(spec, **WRITE_STEPPING).run_pulses(g, train)
        runs = {s: run_tile_transient(s, spec, g, train, cache_dir=tmp_path) for s in SIMS}
        moved = np.diag(dyn.w_final - w0)
        assert np.all(np.abs(moved) > 0.05) and np.all(np.sign(moved) == np.sign(v))
        for name, r in {"surrogate": dyn, **runs}.items():
            disturb[scheme, name] = np.max(np.abs(r.w_final - w0)[off])
        for s, r in runs.items():
            rms = np.sqrt(np.mean((dyn.w_final - r.w_final) ** 2))
            assert rms < 0.01 * 0.1, (scheme, s, rms)    # measured ~1e-4 of the state range
        assert np.sqrt(np.mean((runs["ngspice"].w_final - runs["vacask"].w_final) ** 2)) < 1e-3
    for name in ("surrogate", *SIMS):
        # V/2: half-selected cells at 0.7 V move (RESET: a quarter of the selected cell's rate;
        # SET: alpha_on = 3 makes it ~1 %); V/3: 0.47 V, below both thresholds, nothing moves
        assert disturb["v2", name] > (0.01 if kind == "reset" else 5e-4), (name, disturb)
        assert disturb["v3", name] < 1e-6, (name, disturb)


def test_the_transient_cache(tmp_path):
    spec = TileSpec(rows=2, cols=3)
    _, g = start(2, 3)
    train = write_train(spec, "v2", 0, 1, 1.4, 1e-3)
    first = run_tile_transient("ngspice", spec, g, train, cache_dir=tmp_path)
    again = run_tile_transient("ngspice", spec, g, train, cache_dir=tmp_path)
    assert not first.cached and again.cached
    assert np.array_equal(first.w_final, again.w_final)
    assert np.array_equal(first.charge_c, again.charge_c)
    other = run_tile_transient("ngspice", spec, g, write_train(spec, "v3", 0, 1, 1.4, 1e-3),
                               cache_dir=tmp_path)
    assert not other.cached


# -- write-verify -----------------------------------------------------------------------------
def targets(rows, cols, seed=2, lo=0.1, hi=0.9):
    """Conductances (S) at states uniform in [lo, hi]."""
    w_t = np.random.default_rng(seed).uniform(lo, hi, (rows, cols))
    return conductance(w_t)


def test_write_verify_reaches_targets_and_v2_disturbs_them():
    spec = TileSpec(rows=4, cols=4)
    w0, _ = start(4, 4, 3)
    t = targets(4, 4, 4)
    tol = 0.01
    res = {s: program_tile(spec, t, scheme=s, w_initial=w0, tolerance=tol, max_pulses=12)
           for s in ("v2", "v3")}
    v3 = res["v3"]
    assert v3.converged.all() and v3.pulses.max() <= 12 and v3.pulses.sum() >= 16
    # the verify reads see the cell through its wires; the true error stays within tolerance
    assert np.max(np.abs(v3.g_error_s)) <= tol * G_RANGE * 1.05
    assert np.max(np.abs(v3.disturb_w)) < 1e-6
    # both polarities were needed, and the programmed time adds up the pulses' periods
    assert np.any(v3.w_final > w0 + 0.05) and np.any(v3.w_final < w0 - 0.05)
    assert v3.time_s.sum() > 0 and np.all(v3.time_s[v3.pulses == 0] == 0)
    # V/2: the writes of later cells disturb the cells verified before them
    v2 = res["v2"]
    assert np.max(np.abs(v2.disturb_w)) > 0.02
    assert np.max(np.abs(v2.g_error_s)) > 2 * np.max(np.abs(v3.g_error_s))
    j = v3.to_json()
    assert np.array(j["states"]).shape == (4, 4) and j["all_converged"]
    assert j["total_pulses"] == int(v3.pulses.sum())


@pytest.mark.parametrize("sim", SIMS)
def test_write_verify_in_spice_agrees_with_the_surrogate(sim, tmp_path):
    spec = TileSpec(rows=4, cols=4)
    w0, _ = start(4, 4, 5)
    t = np.where(np.eye(4, dtype=bool), targets(4, 4, 6), np.nan)    # diagonal only
    kw = dict(scheme="v2", w_initial=w0, tolerance=0.01, max_pulses=10)
    spice = program_tile(spec, t, backend=sim, cache_dir=tmp_path, **kw)
    sur = program_tile(spec, t, backend="surrogate", **kw)
    assert spice.backend == sim and sur.backend == "surrogate"
    assert spice.converged[np.isfinite(t)].all() and not spice.converged[np.isnan(t)].any()
    assert np.all(np.isnan(spice.g_error_s[np.isnan(t)]))
    assert np.sqrt(np.mean((spice.w_final - sur.w_final) ** 2)) < 0.01
    assert np.array_equal(spice.pulses, sur.pulses)
    # the untargeted cells' state change is pure disturb, and SPICE and the surrogate see it alike
    off = np.isnan(t)
    assert np.allclose(spice.disturb_w[off], (spice.w_final - w0)[off], atol=1e-12)
    assert np.max(np.abs(spice.disturb_w[off])) > 0.005
    assert np.max(np.abs(spice.disturb_w - sur.disturb_w)) < 0.01 * np.max(np.abs(sur.disturb_w)) + 1e-4


@pytest.mark.parametrize("sim, v", [("ngspice", 1.4), ("vacask", 1.0)])
def test_gate_selected_writes_in_1t1r(sim, v, tmp_path):
    """Only the selected row's gate is on: write-verify of one row leaves the other rows alone.
    The targets lie towards r_on, where the selector in series limits SET (its gate is driven at
    3 V for writes, 1.8 V for reads). (VACASK 0.3.4's sp_mos1 can fail to converge when an off
    selector's drain is driven above ~1 V, from a drive that depends on the machine's rounding —
    so its writes stay at 1.0 V.)"""
    spec = TileSpec(rows=4, cols=4, cell="1t1r")
    w0, _ = start(4, 4, 7)
    t = np.full((4, 4), np.nan)
    t[1] = targets(1, 4, 8, 0.03, 0.3)[0]
    res = program_tile(spec, t, scheme="gate", backend=sim, w_initial=w0, tolerance=0.02,
                       max_pulses=12, v_set_v=-v, v_reset_v=v, v_gate_v=3.0, cache_dir=tmp_path)
    assert res.converged[1].all(), res.to_json()["g_error_rel_range"]
    assert np.all(res.pulses[1] >= 1) and res.pulses.sum() == res.pulses[1].sum()
    assert np.max(np.abs(res.g_error_s[1])) <= 0.02 * G_RANGE * 1.1
    assert np.max(np.abs(np.delete(res.w_final - w0, 1, axis=0))) < 1e-6
    if sim == "vacask":     # the limit is VACASK's, and the error says so
        from spicecross.spice.simulators import SimulationError

        # where the abort sets in depends on the machine's rounding (a 2×1 SET at −1.4 V
        # aborted on the eighth session's machine, runs on the ninth's, which aborts at −2 V):
        # the first of these drives that aborts must carry the explanation
        two = TileSpec(rows=2, cols=1, cell="1t1r")
        writer = make_writer("vacask", two)
        errors = []
        for v_set in (-1.4, -2.0, -3.0):
            try:
                writer.pulse(np.full((2, 1), 0.375), write_train(two, "gate", 1, 0, v_set, 3e-12))
            except SimulationError as exc:
                errors.append(str(exc))
                break
        assert errors, "VACASK solved every drive up to -3 V: re-check its sp_mos1 limit"
        assert "≤ 1.0 V in VACASK" in errors[0]


def test_gate_write_verify_in_the_surrogate_agrees_with_vacask(tmp_path):
    """Write-verify of a 1T1R tile in the dynamic surrogate (selectors in the solve, the gate
    lines pulsed) against VACASK: the same pulse counts, the same states to 1e-2 of the range
    (RMS), every target reached, the unaddressed rows untouched."""
    spec = TileSpec(rows=4, cols=4, cell="1t1r")
    w0, _ = start(4, 4, 7)
    t = np.full((4, 4), np.nan)
    t[1] = targets(1, 4, 8, 0.03, 0.3)[0]                 # SETs towards r_on
    t[2, [0, 3]] = targets(1, 2, 9, 0.1, 0.25)[0]
    kw = dict(scheme="gate", w_initial=w0, tolerance=0.02, max_pulses=12, v_set_v=-1.0,
              v_reset_v=1.0, v_gate_v=3.0)
    sur = program_tile(spec, t, backend="surrogate", **kw)
    ref = program_tile(spec, t, backend="vacask", cache_dir=tmp_path, **kw)
    assert sur.backend == "surrogate" and ref.backend == "vacask"
    on = np.isfinite(t)
    assert sur.converged[on].all() and ref.converged[on].all()
    assert np.all(sur.pulses[on] >= 1) and sur.pulses.sum() >= 8
    assert np.array_equal(sur.pulses, ref.pulses)
    assert np.sqrt(np.mean((sur.w_final - ref.w_final) ** 2)) < 0.01
    assert np.max(np.abs(sur.w_final - ref.w_final)) < 0.01
    assert np.max(np.abs((sur.w_final - w0)[[0, 3]])) < 1e-6


# -- cycle-to-cycle variability -----------------------------------------------------------------
def test_c2c_variability_is_seeded_and_scatters_the_state_reached():
    spec = TileSpec(rows=8, cols=8)
    w0, g = start(8, 8, 9)
    # every word line at 1.4 V, bit lines at 0 V: one RESET pulse moves all 64 cells
    train = PulseTrain(np.full((1, 8), 1.4), 5e-3, 0.5e-3, 0.5e-3, 0.5e-3)

    def moved(sigma, seed):
        dyn = DynamicTileSurrogate(spec, c2c_sigma=sigma, seed=seed, **WRITE_STEPPING)
        return dyn.run_pulses(g, train).w_final - w0

    det = moved(0.0, None)
    a, b, c = moved(0.2, 1), moved(0.2, 1), moved(0.2, 2)
    assert np.array_equal(a, b) and not np.allclose(a, c) and not np.allclose(a, det)
    ratio = a / det
    assert 0.15 < np.std(ratio) < 0.25 and abs(np.mean(ratio) - 1) < 0.1
    # in write-verify: seeded, and it changes the result (and the loop still converges)
    t = targets(4, 4, 10)
    spec4 = TileSpec(rows=4, cols=4)
    w4, _ = start(4, 4, 11)
    t[1:] = np.nan
    runs = [program_tile(spec4, t, scheme="v3", w_initial=w4, c2c_sigma=s, seed=k)
            for s, k in ((0.3, 5), (0.3, 5), (0.3, 6), (0.0, 5))]
    assert np.array_equal(runs[0].w_final, runs[1].w_final)
    assert not np.allclose(runs[0].w_final, runs[2].w_final, rtol=0, atol=1e-6)
    assert not np.allclose(runs[0].w_final, runs[3].w_final, rtol=0, atol=1e-6)
    assert all(r.converged[0].all() for r in runs)
    with pytest.raises(ValueError, match="surrogate option"):
        make_writer("ngspice", spec4, c2c_sigma=0.1)
    with pytest.raises(ValueError, match="c2c_sigma"):
        DynamicTileSurrogate(spec4, c2c_sigma=-0.1)


# -- bad inputs and the CLI -------------------------------------------------------------------------
def test_program_tile_rejects_bad_inputs():
    spec = TileSpec(rows=2, cols=2)
    w0 = np.full((2, 2), 0.5)
    t = conductance(np.full((2, 2), 0.5))
    for kw, match in [(dict(targets_s=np.ones((2, 3)) * 1e-3), r"tile's shape \(2, 2\)"),
                      (dict(targets_s=np.full((2, 2), 0.5)), "0.5 S is outside"),
                      (dict(tolerance=0.0), "tolerance"), (dict(max_pulses=0), "pulse budget"),
                      (dict(v_set_v=0.5), "v_set_v < 0"), (dict(v_read_v=0.6), "read voltage"),
                      (dict(backend="spectre"), "backend must be one of")]:
        args = dict(targets_s=t, scheme="v2", w_initial=w0) | kw
        with pytest.raises(ValueError, match=match):
            program_tile(spec, args.pop("targets_s"), **args)


def test_cli_program_writes_json_and_gives_one_line_errors(tmp_path, capsys):
    out = tmp_path / "p.json"
    rc = main(["program", "--rows", "3", "--cols", "3", "--scheme", "v3", "--cells", "diagonal",
               "--seed", "4", "--quiet", "--out", str(out), "--plot", str(tmp_path / "p.png")])
    assert rc == 0
    assert_plot_png(tmp_path / "p.png")
    d = json.loads(out.read_text())
    assert np.array(d["states"]).shape == (3, 3) and d["backend"] == "surrogate"
    assert d["g_target_s"][0][1] is None and d["g_target_s"][1][1] > 0
    assert d["all_converged"] and d["max_abs_error_rel_range"] <= 0.0105
    assert d["total_pulses"] == sum(map(sum, d["pulses"])) and d["total_time_s"] > 0
    capsys.readouterr()
    bad = {"shape": np.full((2, 3), 1e-3), "range": np.full((3, 3), 1.0),
           "nan": np.full((3, 3), np.nan)}
    for name, arr in bad.items():
        np.save(tmp_path / f"{name}.npy", arr)
    np.savez(tmp_path / "two.npz", a=np.ones(2))
    for f, words in [("shape.npy", "shape (2, 3)"), ("range.npy", "1.0 S is outside"),
                     ("nan.npy", "non-finite"), ("two.npz", "several arrays")]:
        rc = main(["program", "--rows", "3", "--cols", "3", "--scheme", "v2", "--quiet",
                   "--targets", str(tmp_path / f)])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and words in err, err
    rc = main(["program", "--rows", "3", "--cols", "3", "--scheme", "v2", "--quiet",
               "--backend", "ngspice", "--c2c-sigma", "0.1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "surrogate option" in err and len(err.splitlines()) == 1
    rc = main(["program", "--rows", "3", "--cols", "3", "--scheme", "gate", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "writes 1t1r tiles" in err and len(err.splitlines()) == 1
    rc = main(["program", "--rows", "3", "--cols", "3", "--scheme", "v2", "--tolerance", "0"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--tolerance '0'" in err and len(err.splitlines()) == 1


def test_dense_solve_survives_two_threads():
    """torch 2.13's MKL LU breaks for matrices of ≥ ~200 after torch.set_num_threads(n ≥ 2)
    (spicecross.threads); the dense wire-network solve uses Cholesky and stays right. In a
    child process, so the thread setting does not leak into other tests."""
    import subprocess
    import sys

    code = (
        "import numpy as np, torch\n"
        "torch.set_num_threads(2)\n"
        "from spicecross.circuit.tile import TileSpec\n"
        "from spicecross.surrogate.dynamic import cell_voltages\n"
        "spec = TileSpec(rows=11, cols=11, r_driver_ohm=2.0, r_sense_ohm=3.0)\n"
        "rng = np.random.default_rng(0)\n"
        "g = torch.as_tensor(rng.uniform(1 / 2500, 1 / 100, (2, 11, 11)))\n"
        "v = torch.as_tensor(rng.uniform(-1, 1, (2, 11)))\n"
        "vb = torch.as_tensor(rng.uniform(-1, 1, (2, 11)))\n"
        "a = cell_voltages(spec, g, v, vb, method='dense')[0]\n"
        "b = cell_voltages(spec, g, v, vb, method='block')[0]\n"
        "assert torch.allclose(a, b, rtol=0, atol=1e-12), float((a - b).abs().max())\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
