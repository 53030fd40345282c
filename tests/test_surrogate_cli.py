"""``spicecross surrogate --mode dynamic``: read pulses on a VTEAM tile through the dynamic
surrogate, the same pulse train ``spicecross netlist --devices vteam`` emits for SPICE (the
surrogate's agreement with ngspice and VACASK is tested in tests/test_tile_transient.py)."""
import json

import numpy as np

from spicecross.circuit.tile import TileSpec
from spicecross.cli import main
from spicecross.spice.tile_transient import pulse_train_from_read
from spicecross.surrogate.dynamic import DynamicTileSurrogate


def _files(tmp_path, v):
    g = np.random.default_rng(0).uniform(1 / 2500, 1 / 100, (8, 8))
    np.save(tmp_path / "g.npy", g)
    np.save(tmp_path / "v.npy", np.asarray(v, dtype=float))
    return g


def _run(tmp_path, capsys, *extra):
    code = main(["surrogate", "--rows", "8", "--cols", "8", "--conductances", str(tmp_path / "g.npy"),
                 "--inputs", str(tmp_path / "v.npy"), "--mode", "dynamic", "--json", *extra])
    assert code == 0
    return json.loads(capsys.readouterr().out)


def _library_states(out, spec, g, v, pulse_v, pulse_ns, pulses):
    """The CLI's answer equals DynamicTileSurrogate's on the same train; the initial states."""
    ref = DynamicTileSurrogate(spec).run_pulses(g, pulse_train_from_read(v, pulse_v,
                                                                         pulse_ns * 1e-9, pulses))
    np.testing.assert_allclose(out["states"], ref.w_final, rtol=0, atol=1e-12)
    np.testing.assert_allclose(out["sense_currents"], ref.currents_a, rtol=1e-12)
    return DynamicTileSurrogate(spec).states_for_conductances(
        __import__("torch").as_tensor(g)).numpy()


def test_pulses_above_threshold_move_the_states_as_the_library_does(tmp_path, capsys):
    v = np.linspace(0.3, 1.0, 8)
    g = _files(tmp_path, v)
    out = _run(tmp_path, capsys, "--pulse-v", "0.9", "--pulse-ns", "20", "--pulses", "4")
    assert np.asarray(out["states"]).shape == (8, 8)
    assert np.asarray(out["sense_currents"]).shape == (4, 8)
    w0 = _library_states(out, TileSpec(rows=8, cols=8), g, v, 0.9, 20, 4)
    dw = np.abs(np.asarray(out["states"]) - w0).max(axis=1)        # per row (word line)
    row_v = v * 0.9 / v.max()
    assert np.all(dw[row_v < 0.45] == 0.0)           # below pt_hf_ti's 0.5 V threshold: still
    assert np.all(dw[row_v > 0.6] > 0.0)             # above it: the devices moved


def test_reads_below_threshold_leave_the_states(tmp_path, capsys):
    g = _files(tmp_path, np.full(8, 0.2))
    out = _run(tmp_path, capsys, "--pulses", "3")
    spec = TileSpec(rows=8, cols=8)
    w0 = DynamicTileSurrogate(spec).states_for_conductances(__import__("torch").as_tensor(g)).numpy()
    np.testing.assert_allclose(out["states"], w0, rtol=0, atol=1e-12)
    cur = np.asarray(out["sense_currents"])
    np.testing.assert_allclose(cur, np.broadcast_to(cur[0], cur.shape), rtol=1e-12)


def test_dynamic_mode_refuses_a_batch(tmp_path, capsys):
    _files(tmp_path, np.full((2, 8), 0.2))
    assert main(["surrogate", "--rows", "8", "--cols", "8", "--conductances", str(tmp_path / "g.npy"),
                 "--inputs", str(tmp_path / "v.npy"), "--mode", "dynamic"]) != 0
    assert "one input vector" in capsys.readouterr().err


def test_1t1r_tiles_run_with_the_selectors_as_the_library_does(tmp_path, capsys):
    """--cell 1t1r: the selectors take part in every step (gates at the spec's DC voltage);
    the CLI answers as DynamicTileSurrogate does and the devices behind the higher inputs move."""
    v = np.linspace(0.3, 1.0, 8)
    g = _files(tmp_path, v)
    out = _run(tmp_path, capsys, "--cell", "1t1r", "--pulse-v", "1.5", "--pulse-ns", "500",
               "--pulses", "3")
    w0 = _library_states(out, TileSpec(rows=8, cols=8, cell="1t1r"), g, v, 1.5, 500, 3)
    dw = np.abs(np.asarray(out["states"]) - w0).max(axis=1)        # per row (word line)
    assert dw[0] == 0.0                       # 0.45 V: below pt_hf_ti's 0.5 V threshold
    assert dw[-1] > 1e-6                      # 1.5 V, part of it across the selector: moved
