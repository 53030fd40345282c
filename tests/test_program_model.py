"""Programming a network through the calibrated programming model (``infer --program``):
open-loop pulse widths from the nominal device, the open-loop calibration against ngspice and
VACASK on the same tile, the model's error draws, caching, and the CLI."""
import json

import numpy as np
import pytest

from spicecross.circuit.tile import TileSpec
from spicecross.cli import main
from spicecross.devices.vteam import get_parameter_set, resistance_at_state_ohm
from spicecross.devices.vteam_reference import simulate
from spicecross.spice.programming import RAMP_FRACTION, make_writer
from spicecross.surrogate.program_model import (ProgrammingModel, calibrate_programming,
                                                open_loop_program, open_loop_width_s)

P = get_parameter_set("pt_hf_ti")


pytestmark = pytest.mark.usefixtures("module_osdi_cache")


def test_open_loop_width_reaches_the_target_on_the_nominal_device():
    targets = np.array([0.05, 0.3, 0.62, 0.9])
    widths = open_loop_width_s(P, targets, -1.4)
    assert np.all(np.diff(widths) < 0)              # deeper SET, longer pulse
    for w_t, wd in zip(targets, widths):
        t = np.array([0.0, RAMP_FRACTION * wd, (1 + RAMP_FRACTION) * wd,
                      (1 + 2 * RAMP_FRACTION) * wd])
        _, x = simulate(P, t, np.array([0.0, -1.4, -1.4, 0.0]), P.x_off_m,
                        max_step_s=wd / 4000.0)
        assert abs(x[-1] / P.x_off_m - w_t) < 5e-3  # finer steps than the bisection's own


def test_open_loop_width_refuses_a_voltage_that_cannot_set():
    with pytest.raises(ValueError, match="below v_on"):
        open_loop_width_s(P, [0.5], -0.2)


@pytest.mark.parametrize("sim", ["ngspice", "vacask"])
def test_open_loop_programming_surrogate_matches_spice(sim):
    """The calibration's open-loop writes (V/3, wires) in the dynamic surrogate and in SPICE:
    same final states on a 4×4 tile with 2 Ω wires (the wires make the written cells miss
    their nominal targets)."""
    spec = TileSpec(4, 4, r_wire_wl_ohm=2.0, r_wire_bl_ohm=2.0)
    rows, cols, w_t = np.array([0, 3, 2]), np.array([1, 3, 0]), np.array([0.2, 0.5, 0.8])
    w0 = np.ones((4, 4))
    w_sur, t_sur = open_loop_program(spec, P, make_writer("surrogate", spec, P), rows, cols,
                                     w_t, -1.4, w0)
    w_sp, t_sp = open_loop_program(spec, P, make_writer(sim, spec, P), rows, cols, w_t, -1.4,
                                   w0)
    np.testing.assert_allclose(t_sur, t_sp)
    assert np.max(np.abs(w_sur - w_sp)) < 1e-2
    miss = w_sur[rows, cols] - w_t
    assert np.max(np.abs(miss)) > 1e-3               # the wires matter …
    untouched = np.ones((4, 4), bool)
    untouched[rows, cols] = False
    assert np.max(np.abs(w_sur[untouched] - 1.0)) < 1e-6   # … and V/3 leaves the rest alone


def _model(dw):
    n = len(dw)
    return ProgrammingModel("write-verify", 0.02, "8x8", -1.4, tuple(np.linspace(0.1, 0.9, n)),
                            tuple(dw), (2,) * n, (1e-9,) * n, 0.0, 1.0)


def test_model_draws_calibration_errors_and_leaves_reset_cells_alone():
    dw = np.array([0.01, -0.02, 0.03, -0.04, 0.05, -0.06, 0.07, -0.08])
    model = _model(dw)
    w_t = np.array([[1.0, 0.3, 0.5], [0.7, 1.0, 0.2]])
    g_t = 1.0 / resistance_at_state_ohm(w_t, P.r_on_ohm, P.r_off_ohm)
    g, info = model.program(g_t, P, np.random.default_rng(0))
    reset = w_t == 1.0
    np.testing.assert_allclose(g[reset], g_t[reset])
    g_range = 1 / P.r_on_ohm - 1 / P.r_off_ohm
    cal_w = np.asarray(model.w_target)
    cal_dg = (1 / resistance_at_state_ohm(cal_w + dw, P.r_on_ohm, P.r_off_ohm)
              - 1 / resistance_at_state_ohm(cal_w, P.r_on_ohm, P.r_off_ohm)) / g_range
    moved = (g[~reset] - g_t[~reset]) / g_range
    assert all(np.min(np.abs(cal_dg - m)) < 1e-9 for m in moved)   # conductance errors drawn
    assert info["written_cells"] == 4 and info["pulses"] == 8
    g2, _ = model.program(g_t, P, np.random.default_rng(0))
    np.testing.assert_array_equal(g, g2)                  # seeded


def test_calibration_is_cached_and_errors_are_bounded(tmp_path):
    spec = TileSpec(6, 6)
    w_net = np.random.default_rng(3).uniform(0.1, 0.9, 200)
    m1 = calibrate_programming(spec, w_net, method="write-verify", cells=4, cache_dir=tmp_path,
                               max_pulses=12)
    assert len(list((tmp_path / "programming").glob("*.json"))) == 1
    m2 = calibrate_programming(spec, w_net, method="write-verify", cells=4, cache_dir=tmp_path,
                               max_pulses=12)
    assert m2 == m1                                        # loaded, not re-run
    g_t = 1.0 / resistance_at_state_ohm(np.asarray(m1.w_target), P.r_on_ohm, P.r_off_ohm)
    g_f = 1.0 / resistance_at_state_ohm(np.asarray(m1.w_target) + np.asarray(m1.dw),
                                        P.r_on_ohm, P.r_off_ohm)
    g_range = 1 / P.r_on_ohm - 1 / P.r_off_ohm
    assert np.max(np.abs(g_f - g_t)) / g_range < 0.05       # verify reads see small wire drop
    (tmp_path / "programming" / next((tmp_path / "programming").iterdir()).name
     ).write_text("{not json")
    m3 = calibrate_programming(spec, w_net, method="write-verify", cells=4, cache_dir=tmp_path,
                               max_pulses=12)
    assert m3.dw == m1.dw                                  # damaged entry recomputed
    with pytest.raises(ValueError, match="0t1r"):
        calibrate_programming(TileSpec(4, 4, cell="1t1r"), w_net, method="open-loop", cells=2)
    with pytest.raises(ValueError, match="method"):
        calibrate_programming(spec, w_net, method="spray", cells=2)


def _infer(capsys, *extra):
    rc = main(["infer", "--limit", "60", "--tile", "16x16", "--spice-check", "0",
               "--calibration-images", "16", "--json", *extra])
    out = capsys.readouterr().out
    return rc, (json.loads(out.strip().splitlines()[-1]) if rc == 0 else None)


def test_infer_program_reports_the_error_it_leaves(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SPICECROSS_CACHE", str(tmp_path))
    rc, exact = _infer(capsys)
    assert rc == 0
    rc, res = _infer(capsys, "--program", "open-loop", "--program-cells", "3")
    assert rc == 0
    p = res["programming"]
    assert p["method"] == "open-loop" and p["calibration_tile"] == "16x16"
    assert p["written_cells"] > 1000 and p["g_error_rms_of_range"] > 0
    assert len(p["per_layer"]) == 5
    assert res["images"] == exact["images"]


@pytest.mark.parametrize("extra, msg", [
    (["--cell", "1t1r"], "--cell 1t1r"),
    (["--program-cells", "999"], "--program-cells 999"),
    (["--sigma", "10"], "--sigma"),
    (["--program-tolerance", "0"], "--program-tolerance"),
])
def test_infer_program_refuses_what_it_does_not_model(capsys, extra, msg):
    rc = main(["infer", "--limit", "10", "--tile", "16x16", "--spice-check", "0",
               "--program", "write-verify", *extra])
    err = capsys.readouterr().err
    assert rc != 0 and msg in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
