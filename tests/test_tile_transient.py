"""VTEAM devices in the tiles: tile netlists with VTEAM instances, read-pulse transients in
ngspice (behavioural subcircuit) and VACASK (Verilog-A), and the dynamic torch surrogate, which
must agree with both on states, sense currents and charge per pulse."""
import numpy as np
import pytest
from conftest import programmed
import torch

from spicecross.circuit.netlist import ngspice_netlist_from_elements, vacask_netlist_from_elements
from spicecross.circuit.tile import TileSpec, tile_elements
from spicecross.devices.vteam import get_parameter_set, state_for_conductance
from spicecross.spice.tile_transient import (PulseTrain, emit_tile_transient,
                                             pulse_train_from_read, run_tile_transient,
                                             write_pulse_netlist)
from spicecross.surrogate.dynamic import DynamicTileSurrogate, cell_voltages
from spicecross.surrogate.network import build_network
from spicecross.surrogate.tile_model import TileSurrogate

P = get_parameter_set("pt_hf_ti")
SIMS = ("ngspice", "vacask")


pytestmark = pytest.mark.usefixtures("module_osdi_cache")


def initial_w(g):
    return (state_for_conductance(P, g) - P.x_on_m) / P.x_span_m


# pt_hf_ti: positive pulses above v_off = 0.5 V move x towards OFF at ~1 range per second
# (k_off 4.03e-8 m/s over 10 nm), negative ones below v_on = −0.53 V towards ON in
# nanoseconds with alpha_on = 3 (a strongly nonlinear rate): two very different time scales.
TRAINS = {
    "reset": lambda rows, rng: PulseTrain(rng.uniform(0.6, 0.8, (10, rows)), 20e-3, 1e-3, 1e-3,
                                          5e-3),
    "set": lambda rows, rng: PulseTrain(rng.uniform(-0.62, -0.57, (10, rows)), 2e-9, 0.2e-9,
                                        0.2e-9, 0.5e-9),
}


def compare(spec, g, train, sims=SIMS, params=None):
    """Run the surrogate and the simulators; return their results and the surrogate's."""
    dyn = DynamicTileSurrogate(spec, params).run_pulses(g, train)
    runs = {s: run_tile_transient(s, spec, g, train, device_params=params) for s in sims}
    return dyn, runs


def assert_agree(a, b, what):
    """States within 1 % of the range (RMS), currents and charges within 1 % of their peak."""
    rms_w = np.sqrt(np.nanmean((a.w_final - b.w_final) ** 2))
    err_i = np.max(np.abs(a.currents_a - b.currents_a)) / np.max(np.abs(b.currents_a))
    err_q = np.max(np.abs(a.charge_c - b.charge_c)) / np.max(np.abs(b.charge_c))
    assert rms_w < 0.01 and err_i < 0.01 and err_q < 0.01, (what, rms_w, err_i, err_q)


# -- the element list and the netlists ----------------------------------------------------------
@pytest.mark.parametrize("cell", ["0t1r", "1t1r"])
def test_vteam_cells_start_at_the_programmed_conductance(cell):
    spec = TileSpec(rows=3, cols=4, cell=cell)
    g = programmed(3, 4)
    g[1, 2] = 0.0                                     # an open cell stays open
    els = tile_elements(spec, g, np.full(3, 0.2), devices="vteam")
    mem = {e.name: e for e in els if e.kind == "MEM"}
    assert len(mem) == 11 and "c1_2" not in mem
    assert not any(e.kind == "R" and e.name.startswith("c") for e in els)
    for (i, j), gij in np.ndenumerate(g):
        if gij > 0:
            e = mem[f"c{i}_{j}"]
            assert e.value == pytest.approx(float(state_for_conductance(P, gij)), rel=1e-12)
            assert dict(e.extra)["w0"] == pytest.approx(initial_w(gij), rel=1e-12)
    # same wires as the resistor tile: only the cells differ
    res = tile_elements(spec, g, np.full(3, 0.2))
    assert [e for e in res if e.kind != "R" or not e.name.startswith("c")] == \
        [e for e in els if e.kind != "MEM"]
    ng = ngspice_netlist_from_elements(spec, els)
    va = vacask_netlist_from_elements(spec, els)
    assert ".subckt vteam p n" in ng and "Xc0_0 wl_0_0" in ng and ".op" in ng
    assert 'load "vteam.osdi"' in va and "xc0_0 (wl_0_0" in va and "model vteam_dev vteam" in va
    with pytest.raises(ValueError, match="devices must be one of"):
        tile_elements(spec, g, np.zeros(3), devices="hp")


def test_pulse_train_waveforms_and_checks():
    tr = PulseTrain(np.array([[0.7, -0.6], [0.5, 0.0]]), 4e-3, 1e-3, 2e-3, 3e-3, scale=2.0)
    assert tr.period_s == pytest.approx(10e-3) and tr.t_stop_s == pytest.approx(20e-3)
    assert np.allclose(tr.sample_times_s(), [8e-3, 18e-3])
    assert np.allclose(tr.wave(0), [0, 0, 3e-3, 0, 4e-3, 1.4, 8e-3, 1.4, 10e-3, 0,
                                    13e-3, 0, 14e-3, 1.0, 18e-3, 1.0, 20e-3, 0])
    for bad in (dict(width_s=0.0), dict(gap_s=-1.0), dict(rise_s=float("nan"))):
        kw = dict(width_s=1.0, rise_s=1.0, fall_s=1.0, gap_s=1.0) | bad
        with pytest.raises(ValueError, match=next(iter(bad))):
            PulseTrain(np.ones((1, 2)), **kw)
    with pytest.raises(ValueError, match="n_pulses, rows"):
        PulseTrain(np.ones(3), 1.0, 1.0, 1.0, 1.0)


def test_pulse_netlist_for_the_cli(tmp_path):
    spec = TileSpec(rows=2, cols=2)
    for sim, suffix in (("ngspice", ".cir"), ("vacask", ".sim")):
        path = write_pulse_netlist(tmp_path / f"p{suffix}", spec, programmed(2, 2),
                                   np.array([0.1, 0.2]), pulse_v=0.7, width_s=50e-9,
                                   n_pulses=3, simulator=sim)
        text = path.read_text()
        assert ("PWL(" in text and ".tran" in text) if sim == "ngspice" else \
            ('type="pwl"' in text and "analysis tran1 tran" in text)
    tr = pulse_train_from_read(np.array([0.1, -0.2]), 0.7, 50e-9, 3)
    assert np.allclose(tr.plateaus_v, [[0.35, -0.7]] * 3) and tr.rise_s == pytest.approx(5e-9)


# -- the surrogate's network solve ----------------------------------------------------------
@pytest.mark.parametrize("spec", [
    TileSpec(rows=5, cols=7),
    TileSpec(rows=6, cols=3, r_wire_wl_ohm=1.0, r_wire_bl_ohm=2.0, r_driver_ohm=3.0,
             r_sense_ohm=5.0),
    TileSpec(rows=1, cols=4), TileSpec(rows=4, cols=1), TileSpec(rows=3, cols=3, r_wire_wl_ohm=0.0),
])
def test_cell_voltages_are_the_exact_network_solve(spec):
    rng = np.random.default_rng(1)
    g = programmed(spec.rows, spec.cols, 2)
    g[0, 0] = 0.0
    v = rng.uniform(-1, 1, (2, spec.rows))
    vc, i = cell_voltages(spec, torch.as_tensor(np.stack([g, g])), torch.as_tensor(v))
    net = build_network(spec.for_solvers(), g)
    x = net.node_voltages(v)
    assert np.allclose(vc.numpy(), x[:, net.wl_index()] - x[:, net.bl_index()], rtol=0,
                       atol=1e-13)
    assert np.allclose(i.numpy(), TileSurrogate(spec, g).read(v), rtol=1e-10, atol=0)


# -- below threshold nothing moves ------------------------------------------------------------
def test_reads_below_threshold_move_nothing():
    spec = TileSpec(rows=8, cols=8)
    g = programmed(8, 8, 3)
    rng = np.random.default_rng(3)
    tr = PulseTrain(rng.uniform(-0.45, 0.45, (4, 8)), 1e-3, 0.1e-3, 0.1e-3, 0.2e-3)
    dyn, runs = compare(spec, g, tr)
    linear = TileSurrogate(spec, g).read(tr.plateaus_v)
    for name, r in {"surrogate": dyn, **runs}.items():
        assert np.max(np.abs(r.w_final - initial_w(g))) < 1e-9, name
        assert np.allclose(r.g_final_s, g, rtol=1e-8), name
        assert np.allclose(r.currents_a, linear, rtol=1e-6, atol=0), name
        assert np.allclose(r.charge_c, linear * (tr.width_s + 0.5 * tr.rise_s + 0.5 * tr.fall_s),
                           rtol=1e-4), name


# -- above threshold: surrogate vs ngspice vs VACASK ------------------------------------------
@pytest.mark.parametrize("kind", list(TRAINS))
def test_pulses_above_threshold_8x8(kind):
    spec = TileSpec(rows=8, cols=8)
    g = programmed(8, 8, 4)
    train = TRAINS[kind](8, np.random.default_rng(5))
    dyn, runs = compare(spec, g, train)
    moved = dyn.w_final - initial_w(g)
    # the states move visibly, in the pulses' direction, and do not all saturate
    assert np.mean(np.abs(moved)) > 0.05 and np.all(np.sign(moved) == (1 if kind == "reset" else -1))
    assert np.mean((dyn.w_final < 1e-3) | (dyn.w_final > 1 - 1e-3)) < 0.5
    # the currents change from pulse to pulse as the conductances move
    assert np.max(np.abs(np.diff(dyn.currents_a, axis=0))) > 0.01 * np.max(np.abs(dyn.currents_a))
    for sim, r in runs.items():
        assert_agree(dyn, r, f"surrogate vs {sim}")
        assert np.allclose(r.g_final_s, 1.0 / (P.r_on_ohm + (P.r_off_ohm - P.r_on_ohm) * r.w_final))
    assert_agree(runs["ngspice"], runs["vacask"], "ngspice vs VACASK")


def test_a_window_function_in_the_tile():
    """Joglekar (p = 1) slows the cells near the bounds; the surrogate and VACASK agree."""
    spec = TileSpec(rows=8, cols=8)
    params = P.replace(window="joglekar", window_p=1.0)
    g = programmed(8, 8, 6)
    train = TRAINS["reset"](8, np.random.default_rng(7))
    dyn, runs = compare(spec, g, train, sims=("vacask",), params=params)
    plain = DynamicTileSurrogate(spec).run_pulses(g, train)
    assert np.all(np.abs(dyn.w_final - initial_w(g)) < np.abs(plain.w_final - initial_w(g)))
    assert_agree(dyn, runs["vacask"], "surrogate vs VACASK, Joglekar window")


@pytest.mark.slow
def test_pulses_above_threshold_32x32():
    spec = TileSpec(rows=32, cols=32, r_driver_ohm=1.0, r_sense_ohm=1.0)
    g = programmed(32, 32, 8)
    train = TRAINS["reset"](32, np.random.default_rng(9))
    dyn, runs = compare(spec, g, train, sims=("vacask",))
    assert np.mean(np.abs(dyn.w_final - initial_w(g))) > 0.03
    assert_agree(dyn, runs["vacask"], "surrogate vs VACASK, 32×32")
    assert np.max(np.abs(dyn.w_final - initial_w(g))) > 0.1


def test_batch_of_tiles_is_each_tile_alone():
    spec = TileSpec(rows=4, cols=4)
    gs = np.stack([programmed(4, 4, s) for s in range(3)])
    rng = np.random.default_rng(10)
    trains = [PulseTrain(rng.uniform(0.55, 0.8, (3, 4)), 20e-3, 1e-3, 1e-3, 5e-3)
              for _ in range(3)]
    sur = DynamicTileSurrogate(spec)
    batch = sur.run_pulses(gs, trains)
    for b in range(3):
        one = sur.run_pulses(gs[b], trains[b])
        # the step count follows the batch's fastest cell: same answer to integration error
        assert np.allclose(batch.w_final[b], one.w_final, rtol=0, atol=5e-4)
        assert np.allclose(batch.currents_a[b], one.currents_a, rtol=2e-3)
    assert "Xc0_0" in emit_tile_transient("ngspice", spec, gs[0], trains[0])
