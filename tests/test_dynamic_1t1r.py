"""1T1R VTEAM tiles in the dynamic surrogate: the memristor voltages from the exact nonlinear
solve with the level-1 selectors (gates at the pulse train's voltages), against the 1T1R VTEAM
transients of ngspice (behavioural) and VACASK (Verilog-A): read pulses above threshold with
the gates at their DC voltage, and gate-selected write pulses (scheme ``gate``)."""
import numpy as np
import pytest
import torch
from conftest import programmed
from test_tile_transient import assert_agree, initial_w

from spicecross.circuit.tile import TileSpec
from spicecross.spice.programming import open_loop_train
from spicecross.spice.tile_transient import PulseTrain, run_tile_transient
from spicecross.surrogate.cells import series_node_1t1r
from spicecross.surrogate.dynamic import DynamicTileSurrogate
from spicecross.surrogate.dynamic_1t1r import SelectorTileSolve
from spicecross.surrogate.nonlinear import read_many
from spicecross.surrogate.programming import WRITE_STEPPING

SIMS = ("ngspice", "vacask")

pytestmark = pytest.mark.usefixtures("module_osdi_cache")


def spec_1t1r(n):
    """An n×n 1T1R tile with wires, driver and sense resistances (Ω)."""
    return TileSpec(rows=n, cols=n, cell="1t1r", r_wire_wl_ohm=1.0, r_wire_bl_ohm=1.5,
                    r_driver_ohm=2.0, r_sense_ohm=3.0)


def compare(spec, g, train, **stepping):
    dyn = DynamicTileSurrogate(spec, **stepping).run_pulses(g, train)
    return dyn, {s: run_tile_transient(s, spec, g, train) for s in SIMS}


# -- the solve at one time step ------------------------------------------------------------------
def test_selector_solve_is_the_exact_nonlinear_read():
    """DC gates, bit lines at 0 V: the sense currents are read_many's (the solver checked against
    both simulators), the memristor currents g·V_mem balance each series node with its selector,
    and a warm start lands on the same answer."""
    spec = spec_1t1r(6)
    rng = np.random.default_rng(2)
    g = np.stack([programmed(6, 6, s) for s in range(3)])
    g[1, 2, 3] = 0.0                                          # an open cell
    v = rng.uniform(0.1, 0.9, (3, 6))
    solve = SelectorTileSolve(spec)
    gates = torch.full((3, 6), spec.selector.v_gate_v, dtype=torch.float64)
    zero_bl = torch.zeros((3, 6), dtype=torch.float64)
    v_mem, i = solve(torch.as_tensor(g), torch.as_tensor(v), zero_bl, gates)
    ref = read_many(spec, g, v[:, None, :])[:, 0]
    assert np.allclose(i.numpy(), ref, rtol=1e-9, atol=0)
    assert v_mem[1, 2, 3] == 0.0 and np.all(v_mem.numpy()[g > 0] > 0.05)
    # the node voltages the solve found: each series node is where series_node_1t1r puts it
    a, b, m = (x[:, :, 0, :].numpy() for x in solve._state)
    on = g > 0
    m_ref = series_node_1t1r(spec.for_solvers(), g[on], a[on], b[on])
    assert np.allclose(m[on], m_ref, rtol=0, atol=1e-9)
    again, i2 = solve(torch.as_tensor(g * 1.01), torch.as_tensor(v), zero_bl, gates)
    cold = SelectorTileSolve(spec)(torch.as_tensor(g * 1.01), torch.as_tensor(v), zero_bl, gates)
    assert np.allclose(again.numpy(), cold[0].numpy(), rtol=0, atol=1e-9)
    assert not np.allclose(i2.numpy(), i.numpy(), rtol=1e-3)
    with pytest.raises(ValueError, match="1t1r"):
        SelectorTileSolve(TileSpec(rows=2, cols=2))


def test_gates_off_and_driven_bit_lines():
    """A row whose gate is at 0 V carries no current and its memristors see nothing; a bit line
    driven at its sense end lifts its nodes: the memristor voltages follow."""
    spec = spec_1t1r(4)
    g = torch.as_tensor(programmed(4, 4, 1))[None]
    v = torch.tensor([[0.8, 0.8, 0.0, 0.0]], dtype=torch.float64)
    gates = torch.tensor([[3.0, 0.0, 3.0, 0.0]], dtype=torch.float64)
    bl = torch.tensor([[0.0, 0.8, 0.0, 0.8]], dtype=torch.float64)
    v_mem, i = SelectorTileSolve(spec)(g, v, bl, gates)
    v_mem = v_mem[0].numpy()
    assert np.all(np.abs(v_mem[1]) < 1e-6) and np.all(np.abs(v_mem[3]) < 1e-6)  # gates off
    assert np.all(v_mem[0, [0, 2]] > 0.3) and np.all(np.abs(v_mem[0, [1, 3]]) < 0.05)
    assert np.all(v_mem[2, [1, 3]] < -0.3)          # word line 0 V, bit line 0.8 V: a SET
    assert i[0, 0] > 0 and i[0, 1] < 0


# -- against ngspice and VACASK ------------------------------------------------------------------
@pytest.mark.parametrize("n", [4, 8])
def test_read_pulses_above_threshold(n):
    """10 read pulses of 0.8–1.0 V with every gate at its DC 1.8 V: the selectors take part of
    the drive, most memristors still see more than v_off = 0.5 V and RESET."""
    spec = spec_1t1r(n)
    g = programmed(n, n, 4)
    train = PulseTrain(np.random.default_rng(5).uniform(0.8, 1.0, (10, n)), 20e-3, 1e-3, 1e-3,
                       5e-3)
    dyn, runs = compare(spec, g, train)
    moved = dyn.w_final - initial_w(g)
    # most cells RESET; a cell near r_on gets less than v_off past its selector's drop
    assert np.mean(moved) > 0.1 and np.mean(moved > 0.01) > 0.8 and np.all(moved >= 0)
    assert np.mean((dyn.w_final < 1e-3) | (dyn.w_final > 1 - 1e-3)) < 0.5
    assert np.max(np.abs(np.diff(dyn.currents_a, axis=0))) > 0.01 * np.max(np.abs(dyn.currents_a))
    for sim, r in runs.items():
        assert_agree(dyn, r, f"surrogate vs {sim}")
    assert_agree(runs["ngspice"], runs["vacask"], "ngspice vs VACASK")


def test_negative_read_pulses_forward_bias_the_junctions():
    """10 SET reads of −0.9…−0.75 V (2 ns): the word lines sit below the grounded bulk, so the
    selectors' drain–bulk junctions conduct while the memristors SET; all three agree."""
    spec = spec_1t1r(4)
    g = programmed(4, 4, 3)
    train = PulseTrain(np.random.default_rng(4).uniform(-0.9, -0.75, (10, 4)), 2e-9, 0.2e-9,
                       0.2e-9, 0.5e-9)
    dyn, runs = compare(spec, g, train, **WRITE_STEPPING)
    moved = dyn.w_final - initial_w(g)
    assert np.mean(moved) < -0.1 and np.all(moved <= 0) and np.mean(moved < -0.01) > 0.7
    for sim, r in runs.items():
        assert_agree(dyn, r, f"surrogate vs {sim}")
    assert_agree(runs["ngspice"], runs["vacask"], "ngspice vs VACASK")


@pytest.mark.slow
def test_read_pulses_above_threshold_32x32():
    spec = spec_1t1r(32)
    g = programmed(32, 32, 8)
    train = PulseTrain(np.random.default_rng(9).uniform(1.0, 1.2, (10, 32)), 20e-3, 1e-3, 1e-3,
                       5e-3)
    dyn = DynamicTileSurrogate(spec).run_pulses(g, train)
    ref = run_tile_transient("vacask", spec, g, train)
    moved = dyn.w_final - initial_w(g)
    assert np.mean(moved) > 0.03 and np.max(moved) > 0.2
    assert_agree(dyn, ref, "surrogate vs VACASK, 32×32 1T1R")


# Gate-selected writes (one gate line on at 3 V, the others at 0 V; |V| ≤ 1.0 V, VACASK's limit
# for 1T1R writes): RESET at 1.0 V moves ~7 ranges/s, SET at −1.0 V ~1e9 ranges/s through
# the selector: the widths that move each selected cell by ~0.1 of the range.
WRITES = {"reset": (1.0, 30e-3), "set": (-1.0, 60e-12)}


@pytest.mark.parametrize("n, kind", [(4, "reset"), (4, "set"), (8, "set")])
def test_gate_selected_write_pulses(n, kind):
    spec = spec_1t1r(n)
    g = programmed(n, n, 6)
    rng = np.random.default_rng(7)
    cells = [(i, int(rng.integers(n))) for i in range(n)]
    v, width = WRITES[kind]
    train = open_loop_train(spec, "gate", cells, v, width, v_gate_v=3.0)
    dyn, runs = compare(spec, g, train, **WRITE_STEPPING)
    moved = dyn.w_final - initial_w(g)
    selected = np.zeros((n, n), dtype=bool)
    selected[tuple(np.array(cells).T)] = True
    sign = 1 if kind == "reset" else -1
    # every selected cell moves its way (a SET slows as the cell's falling resistance shifts
    # the drive onto the selector: cells near r_on move least)
    assert np.all(sign * moved[selected] > 1e-4) and np.mean(np.abs(moved[selected])) > 0.05
    for name, r in {"surrogate": dyn, **runs}.items():   # the other cells are not disturbed
        assert np.max(np.abs((r.w_final - initial_w(g))[~selected])) < 1e-6, name
    for sim, r in runs.items():
        assert_agree(dyn, r, f"surrogate vs {sim}")
    assert_agree(runs["ngspice"], runs["vacask"], "ngspice vs VACASK")


def test_batch_of_1t1r_tiles_is_each_tile_alone():
    """Tiles under different trains of one timing in one batch — reads with the gates at DC and
    a gate-selected write (gates and bit lines pulsed) — answer as each tile alone, to the
    integration error (the step count follows the batch's fastest cell)."""
    spec = spec_1t1r(4)
    gs = np.stack([programmed(4, 4, s) for s in range(3)])
    rng = np.random.default_rng(11)
    width = 10e-3
    write = open_loop_train(spec, "gate", [(0, 1), (2, 3), (3, 0)], 1.0, width, v_gate_v=3.0)
    trains = [PulseTrain(rng.uniform(0.8, 1.0, (3, 4)), width, 0.1 * width, 0.1 * width,
                         0.1 * width) for _ in range(2)]
    trains.insert(1, write)
    sur = DynamicTileSurrogate(spec, **WRITE_STEPPING)
    batch = sur.run_pulses(gs, trains)
    for b in range(3):
        one = sur.run_pulses(gs[b], trains[b])
        assert np.max(np.abs(one.w_final - initial_w(gs[b]))) > 0.02
        assert np.allclose(batch.w_final[b], one.w_final, rtol=0, atol=5e-4)
        assert np.allclose(batch.currents_a[b], one.currents_a, rtol=2e-3, atol=1e-9)


def test_gate_pulses_need_a_1t1r_tile():
    train = PulseTrain(np.ones((1, 2)), 1e-3, 1e-4, 1e-4, 1e-4, v_gates_v=np.ones((1, 2)))
    with pytest.raises(ValueError, match="gate pulses need a 1t1r tile"):
        DynamicTileSurrogate(TileSpec(rows=2, cols=2)).run_pulses(programmed(2, 2), train)
