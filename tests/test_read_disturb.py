"""Read disturb: the array-level VTEAM update with exact cell voltages against ngspice
(behavioural VTEAM) and VACASK (Verilog-A) read-pulse transients, its no-solve bounds, its
segment integration against per-pulse integration, and the network-level run behind
``spicecross infer --read-disturb``."""
import json
import warnings
from dataclasses import replace

import numpy as np
import pytest
from conftest import programmed
import torch

from spicecross.circuit.tile import TileSpec
from spicecross.cli import main
from spicecross.devices.vteam import get_parameter_set, state_for_conductance
from spicecross.spice.tile_transient import PulseTrain, run_tile_transient
from spicecross.surrogate.dynamic import cell_voltage_transfer, cell_voltages
from spicecross.surrogate.read_disturb_bounds import inert_reads, row_voltage_bounds
from spicecross.surrogate.read_disturb_update import ReadPulse, advance_arrays

P = get_parameter_set("pt_hf_ti")


pytestmark = pytest.mark.usefixtures("module_osdi_cache")


def states(g):
    return (state_for_conductance(P, g) - P.x_on_m) / P.x_span_m


def distinct_reads(rows, n, seed):
    """``n`` distinct read vectors (V): inputs spread from well below to well above v_off, so
    every kind of row (skipped, surely switching, solved) occurs."""
    return np.random.default_rng(seed).uniform(0.2, 0.8, (n, rows))


# -- against SPICE ------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [8, pytest.param(16, marks=pytest.mark.slow)])
def test_network_update_matches_ngspice_and_vacask(n):
    spec = TileSpec(rows=n, cols=n)
    g = programmed(n, n, n)
    v = distinct_reads(n, 12, n + 1)
    width = 20e-3
    # SPICE needs ramps: the exact path integrates them; the aggregated path (rectangular
    # pulses, what the network applies) is compared with ramps of 1e-4 of the width
    cases = {"ramps": (PulseTrain(v, width, 1e-3, 1e-3, 5e-3), ReadPulse(width, 1e-3, 1e-3)),
             "rectangular": (PulseTrain(v, width, 2e-6, 2e-6, 5e-3), ReadPulse(width))}
    for name, (train, pulse) in cases.items():
        g_new, st = advance_arrays(spec, P, g[None], v, pulse)
        w = states(g_new[0])
        assert np.mean(np.abs(w - states(g))) > 0.05, name         # the reads really disturb
        assert st.rows_skipped > 0, (name, st)
        assert (st.rows_aggregated if name == "rectangular" else st.rows_exact) > 0, (name, st)
        for sim in ("ngspice", "vacask"):
            ref = run_tile_transient(sim, spec, g, train)
            rms = np.sqrt(np.mean((w - ref.w_final) ** 2))
            assert rms < 0.01, (name, sim, rms)


def spec_1t1r(n):
    return TileSpec(rows=n, cols=n, cell="1t1r", r_wire_wl_ohm=1.0, r_wire_bl_ohm=1.5,
                    r_driver_ohm=2.0, r_sense_ohm=3.0)


def test_1t1r_update_matches_ngspice_and_vacask():
    """1T1R arrays: every segment's reads solved with the selectors (gates at DC 1.8 V), against
    the 1T1R VTEAM transients (rectangular reads: SPICE's ramps 1e-4 of the width)."""
    spec = spec_1t1r(8)
    g = programmed(8, 8, 8)
    v = np.random.default_rng(9).uniform(0.3, 1.0, (12, 8))
    v[0] = 0.4                                                # one inert read
    width = 20e-3
    g_new, st = advance_arrays(spec, P, np.stack([g, g[::-1]]), v, ReadPulse(width))
    w = states(g_new[0])
    assert np.mean(np.abs(w - states(g))) > 0.05 and st.inert_reads == 1
    assert st.rows_exact >= 11 * 8 and st.transfer_builds == 0
    # the second array (rows reversed) moves differently: the arrays are solved each alone
    assert not np.allclose(states(g_new[1])[::-1], w, atol=1e-3)
    # the selector's drop matters: without it (0T1R) the same reads move the cells far more
    g_0t1r, _ = advance_arrays(replace(spec, cell="0t1r"), P, g[None], v,
                               ReadPulse(width))
    assert np.mean(states(g_0t1r[0]) - states(g)) > 1.5 * np.mean(w - states(g))
    train = PulseTrain(v, width, 2e-6, 2e-6, 5e-3)
    for sim in ("ngspice", "vacask"):
        ref = run_tile_transient(sim, spec, g, train)
        assert np.sqrt(np.mean((w - ref.w_final) ** 2)) < 0.01, sim
    with pytest.raises(ValueError, match="rectangular pulses"):
        advance_arrays(spec, P, g[None], v, ReadPulse(width, 1e-3, 1e-3))


def test_1t1r_ideal_wires_are_each_cell_with_its_selector():
    """wires=False on 1T1R arrays (each cell alone between its input and 0 V) is the wired
    solve of a tile whose wires are 1 µΩ."""
    g = np.stack([programmed(6, 5, 1), programmed(6, 5, 2)])
    v = np.random.default_rng(3).uniform(0.0, 1.0, (20, 6))
    tiny = TileSpec(rows=6, cols=5, cell="1t1r", r_wire_wl_ohm=1e-6, r_wire_bl_ohm=1e-6)
    ideal, _ = advance_arrays(tiny, P, g, v, ReadPulse(5e-3), wires=False)
    wired, _ = advance_arrays(tiny, P, g, v, ReadPulse(5e-3), wires=True)
    assert np.mean(np.abs(states(ideal) - states(g))) > 0.01
    assert np.max(np.abs(states(ideal) - states(wired))) < 1e-6


# -- the bounds ---------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [TileSpec(rows=16, cols=16),
                                  TileSpec(rows=12, cols=7, r_wire_wl_ohm=1.0, r_wire_bl_ohm=2.0,
                                           r_driver_ohm=3.0, r_sense_ohm=5.0)])
def test_skipped_cells_really_stay_below_threshold(spec):
    rng = np.random.default_rng(2)
    g = torch.as_tensor(np.stack([programmed(spec.rows, spec.cols, s) for s in (3, 4)]))
    v = rng.uniform(-0.8, 0.8, (300, spec.rows))
    v[rng.uniform(size=v.shape) < 0.5] = 0.0
    v[:50] *= 0.3                                 # spans below threshold: inert reads
    t = cell_voltage_transfer(spec, g)
    lo, hi = row_voltage_bounds(t, torch.as_tensor(v))
    exact = np.stack([cell_voltages(spec, g, torch.as_tensor(np.stack([x, x])))[0].numpy()
                      for x in v])                                   # (n, A, R, C)
    row_min, row_max = exact.min(axis=(1, 3)), exact.max(axis=(1, 3))
    assert np.all(lo.numpy() <= row_min + 1e-12) and np.all(row_max <= hi.numpy() + 1e-12)
    skipped = (hi.numpy() <= P.v_off_v) & (lo.numpy() >= P.v_on_v)
    assert 0.1 < skipped.mean() < 0.95                              # the test exercises both
    assert np.all(row_max[skipped] <= P.v_off_v) and np.all(row_min[skipped] >= P.v_on_v)
    sure = lo.numpy() > P.v_off_v
    assert sure.any() and np.all(row_min[sure] > P.v_off_v)
    inert = inert_reads(v, P)                                       # the passive-network bound
    assert inert.any() and not inert.all()
    assert np.all(exact[inert] <= P.v_off_v) and np.all(exact[inert] >= P.v_on_v)
    if spec.r_sense_ohm == 0:     # 0.1 Ω wires: the bounds are far tighter than the read voltage
        assert np.max(hi.numpy() - lo.numpy()) < 0.2 * np.max(np.abs(v))


def test_reads_below_threshold_leave_the_arrays_exactly_as_programmed():
    spec = TileSpec(rows=8, cols=8)
    g = np.stack([programmed(8, 8, 5), programmed(8, 8, 6)])
    v = np.random.default_rng(1).uniform(0, P.v_off_v, (50, 8))
    g_new, st = advance_arrays(spec, P, g, v, ReadPulse(1.0))
    assert np.array_equal(g_new, g) and st.inert_reads == 50 and st.transfer_builds == 0


def test_segments_agree_with_per_pulse_integration():
    """Many small disturbs in segments of up to dw_max vs every pulse alone (and cut finely in
    time): the same final states within 1e-3 of the range (the segment error bound)."""
    spec = TileSpec(rows=16, cols=16, r_wire_wl_ohm=0.5, r_wire_bl_ohm=0.5)
    g = np.stack([programmed(16, 16, 7), programmed(16, 16, 8)])
    v = np.random.default_rng(9).uniform(0.0, 0.9, (150, 16))
    pulse = ReadPulse(5e-4)
    fine, st_fine = advance_arrays(spec, P, g, v, pulse, dw_max=3e-4)
    assert st_fine.segments >= 150                               # every pulse its own segment
    coarse, st = advance_arrays(spec, P, g, v, pulse, dw_max=0.01)
    assert st.segments < 30 and st.rows_aggregated > 0
    moved = np.abs(states(fine) - states(g))
    assert moved.mean() > 0.02
    assert np.sqrt(np.mean((states(coarse) - states(fine)) ** 2)) < 1e-3


def test_negative_reads_switch_on_like_the_dynamic_surrogate():
    from spicecross.surrogate.dynamic import DynamicTileSurrogate

    spec = TileSpec(rows=8, cols=8)
    g = programmed(8, 8, 4)
    v = np.random.default_rng(4).uniform(-0.62, -0.5, (10, 8))
    train = PulseTrain(v, 2e-9, 0.2e-9, 0.2e-9, 0.5e-9)
    ref = DynamicTileSurrogate(spec).run_pulses(g, train)
    g_new, _ = advance_arrays(spec, P, g[None], v, ReadPulse(2e-9, 0.2e-9, 0.2e-9))
    w = states(g_new[0])
    assert np.mean(states(g) - w) > 0.05
    assert np.sqrt(np.mean((w - ref.w_final) ** 2)) < 0.01


# -- the network --------------------------------------------------------------------------------
def _network(v_read, cell="0t1r", limit=40):
    from spicecross.nn.analog import patch_model
    from spicecross.nn.inference import load_eval_data, load_network
    from spicecross.surrogate.config import AnalogConfig

    cfg = AnalogConfig.build(tile_rows=16, tile_cols=16, v_read_v=v_read, calibration_images=32,
                             cell=cell)
    data = load_eval_data("mnist", None, limit, cfg.calibration_images)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # reads above threshold are the point
        model = patch_model(load_network("mnist"), cfg, data.calibration)
    return model, data


def _logits(model, x):
    with torch.no_grad():
        return model(x)


def test_network_accuracy_moves_above_threshold_only():
    from spicecross.nn.analog import analog_layers
    from spicecross.nn.read_disturb import disturb_network

    for v_read, disturbed in ((0.45, False), (1.0, True)):
        model, data = _network(v_read)
        x, y = data.test.tensors
        before = _logits(model, x)
        frozen_acc = float((before.argmax(1) == y).float().mean()) * 100
        res = disturb_network(model, data.test, ReadPulse(1e-5), chunk=10)
        after = _logits(model, x)
        layers = analog_layers(model)
        same = all(np.array_equal(m.array.g_dev, m.array.g_dev_programmed) for _, m in layers)
        assert same == (not disturbed)
        if not disturbed:
            assert torch.equal(before, after) and res["accuracy"] == pytest.approx(frozen_acc, abs=1e-4)
            assert [c["moved_share"] for c in res["chunks"]] == [0.0] * 4
        else:
            accs = [c["accuracy"] for c in res["chunks"]]
            assert res["chunks"][-1]["moved_share"] > 0.01
            assert res["chunks"][-1]["max_abs_dw"] > 0.05 > res["chunks"][-1]["mean_abs_dw"]
            assert accs[0] == pytest.approx(100 * float((before[:10].argmax(1) == y[:10]).float()
                                                        .mean()), abs=1e-4)
            assert min(accs[1:]) < accs[0] - 20, accs             # the reads wreck the weights


def test_1t1r_network_moves_above_threshold_only():
    """The 1T1R network (16×16 tiles): reads within the thresholds leave it exactly as
    programmed; 1 V reads of 10 µs move cells, less than in the same 0T1R network (the
    selectors take part of each read's voltage)."""
    from spicecross.nn.analog import analog_layers
    from spicecross.nn.read_disturb import disturb_network

    moved = {}
    for cell, v_read in (("1t1r", 0.45), ("1t1r", 1.0), ("0t1r", 1.0)):
        model, data = _network(v_read, cell, limit=10)
        x, _ = data.test.tensors
        before = _logits(model, x)
        res = disturb_network(model, data.test, ReadPulse(1e-5), chunk=5)
        layers = analog_layers(model)
        same = all(np.array_equal(m.array.g_dev, m.array.g_dev_programmed) for _, m in layers)
        assert same == (v_read < P.v_off_v), (cell, v_read)
        if same:
            assert torch.equal(before, _logits(model, x))
            assert res["stats"].inert_reads == res["stats"].reads > 0
        moved[cell, v_read] = res["chunks"][-1]["mean_abs_dw"]
    assert moved["1t1r", 1.0] > 1e-6
    assert moved["1t1r", 1.0] < moved["0t1r", 1.0]


@pytest.mark.parametrize("cell", ["0t1r", "1t1r"])
def test_cli_read_disturb_below_threshold_is_the_undisturbed_accuracy(cell, tmp_path, capsys):
    png = tmp_path / "rd.png"
    rc = main(["infer", "--read-disturb", "--cell", cell, "--tile", "16x16", "--limit", "20",
               "--calibration-images", "16", "--v-read", "0.4", "--disturb-chunk", "10",
               "--spice-check", "0", "--json", "--plot", str(png)])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    rd = out["read_disturb"]
    assert out["accuracy"] == out["no_disturb_accuracy"]
    assert rd["images"] == [10, 20] and len(rd["accuracy"]) == 2
    assert rd["moved_share"] == [0.0, 0.0] and rd["mean_abs_dw"] == [0.0, 0.0] \
        and rd["max_abs_dw"] == [0.0, 0.0]
    assert rd["read_voltage_v"] == 0.4 and rd["pulse_width_s"] == pytest.approx(1e-7)
    assert rd["inert_reads"] == rd["reads"] > 0
    assert png.stat().st_size > 1000


@pytest.mark.parametrize("argv, bad", [
    (["--read-pulse-ns", "0"], "'0'"),
    (["--read-pulse-ns", "nan"], "'nan'"),
    (["--disturb-chunk", "0"], "'0'"),
    (["--compat", "memtorch"], "memtorch"),
    (["--program", "open-loop"], "open-loop"),
    (["--stuck-hrs", "0.01"], "0.01"),
])
def test_cli_bad_read_disturb_options_are_one_line(argv, bad, capsys):
    rc = main(["infer", "--read-disturb", "--limit", "4", "--spice-check", "0", *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and bad in err, err


@pytest.mark.parametrize("argv, bad", [
    (["--read-pulse-ns", "50"], "--read-pulse-ns"),
    (["--disturb-chunk", "10"], "--disturb-chunk"),
    (["--plot", "x.png"], "--plot"),
    (["--read-disturb", "--spice-loop"], "--spice-loop"),
])
def test_cli_read_disturb_options_need_read_disturb(argv, bad, capsys):
    rc = main(["infer", "--limit", "4", "--spice-check", "0", *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and bad in err, err
