"""Calibration against SPICE: held-out errors, storage with provenance, and the CLIs."""
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import assert_plot_png

from spicecross.calibration import calibrate, load_calibration
from spicecross.circuit.tile import TileSpec


@pytest.mark.parametrize("n", [16, 32])
def test_1t1r_calibration_reaches_one_percent(tmp_path, n):
    spec = TileSpec.uniform_wires(n, n, 1.0, cell="1t1r")
    cal, arrays = calibrate(spec, n_tiles=6, reads_per_tile=4, v_read_max_v=0.2, seed=n,
                            backend="ngspice", out=tmp_path / "cal.h5", progress=False)
    e = cal.errors
    assert e["linear"]["rel_rms"] <= 0.01
    assert e["linear"]["rel_rms"] < e["linear_uncalibrated"]["rel_rms"]   # the fit helps
    assert e["nonlinear"]["rel_rms"] < 1e-6
    assert e["ideal"]["rel_rms"] > 0.1          # what ignoring wires and selector costs
    assert cal.best_mode == "nonlinear"
    back = load_calibration(tmp_path / "cal.h5")
    assert back.g_sel_s == pytest.approx(cal.g_sel_s)
    assert back.spec == spec
    assert back.provenance["simulator_version"].startswith("ngspice-")
    assert len(back.provenance["netlist_hashes"]) == 6       # one swept netlist per tile (4 reads each)
    with h5py.File(tmp_path / "cal.h5") as f:
        assert f["data/spice_currents_a"].shape == (6, 4, n)


def test_passive_calibration_is_exact(tmp_path):
    spec = TileSpec.uniform_wires(24, 24, 2.5)
    cal, _ = calibrate(spec, n_tiles=3, reads_per_tile=3, seed=1, backend="vacask", progress=False)
    assert cal.g_sel_s is None
    assert cal.errors["linear"]["rel_max"] < 1e-6
    assert cal.errors["ideal"]["rel_rms"] > 0.1


def run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "spicecross.cli", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_cli_calibrate_then_surrogate(tmp_path):
    r = run("calibrate", "--rows", "16", "--cols", "16", "--cell", "1t1r", "--tiles", "4", "--reads", "3",
            "--simulator", "ngspice", "--out", "cal.h5", "--plots", "plots", "--json", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["held_out"]["linear"]["rel_rms"] < 0.01
    for png in summary["plots"]:
        assert_plot_png(tmp_path / png)
    rng = np.random.default_rng(0)
    g = rng.uniform(1 / 2500, 1 / 100, (16, 16))
    v = rng.uniform(0, 0.2, (5, 16))
    np.save(tmp_path / "G.npy", g)
    np.save(tmp_path / "V.npy", v)
    r = run("surrogate", "--conductances", "G.npy", "--inputs", "V.npy", "--cell", "1t1r",
            "--mode", "linear", "--calibration", "cal.h5", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lin = np.array(json.loads(r.stdout)["sense_currents"])
    assert lin.shape == (5, 16)
    r = run("surrogate", "--conductances", "G.npy", "--inputs", "V.npy", "--cell", "1t1r",
            "--mode", "nonlinear", "--json", cwd=tmp_path)
    nl = np.array(json.loads(r.stdout)["sense_currents"])
    assert np.max(np.abs(lin - nl)) / np.max(np.abs(nl)) < 0.01
    r = run("surrogate", "--conductances", "G.npy", "--inputs", "V.npy", "--mode", "exact", cwd=tmp_path)
    assert r.returncode == 2 and "exact" in r.stderr
    r = run("surrogate", "--conductances", "G.npy", "--inputs", "V.npy", "--calibration", "G.npy", cwd=tmp_path)
    assert r.returncode == 2 and "G.npy" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_64x64_1t1r_calibration_with_vacask():
    spec = TileSpec.uniform_wires(64, 64, 1.0, cell="1t1r")
    cal, _ = calibrate(spec, n_tiles=5, reads_per_tile=3, v_read_max_v=0.2, seed=64,
                       backend="vacask", progress=False)
    assert cal.errors["linear"]["rel_rms"] <= 0.01
    assert cal.errors["nonlinear"]["rel_rms"] < 1e-6
    assert cal.provenance["simulator_version"].startswith("vacask")


def test_calibrate_from_model_fits_per_layer_and_applies(tmp_path):
    """The calibration set drawn from the patched network: one g_sel per layer, held-out errors
    in ADC steps, stored and applied to the same network (and refused for another)."""
    from spicecross.calibration.calibrate import apply_calibration, load_calibration, save_calibration
    from spicecross.calibration.from_model import calibrate_from_model
    from spicecross.nn.analog import patch_model
    from spicecross.nn.inference import load_network
    from spicecross.surrogate.config import AnalogConfig

    cfg = AnalogConfig.build(cell="1t1r", tile_rows=16, tile_cols=16, calibration_images=16)
    cal, rep = calibrate_from_model("mnist", None, cfg, reads_per_layer=4, images=8, n_jobs=1,
                                    progress=False)
    g0 = cfg.tile.selector.g_on_s
    assert 0.5 * g0 < cal.g_sel_s < 1.5 * g0 and len(cal.g_sel_layers_s) == 5
    assert [p["held_out_by"] for p in rep["held_out"]] == ["read"] * 5   # one sampled tile each
    assert all(0 <= p["max_err_lsb"] < 10 and p["rel_rms"] < 0.05 for p in rep["held_out"])
    path = save_calibration(tmp_path / "cal.h5", cal, {"x": np.zeros(1)})
    back = load_calibration(path)
    assert back.g_sel_layers_s == cal.g_sel_layers_s and back.provenance["v_read_max_v"] == 0.2
    applied = apply_calibration(cfg, back)
    net = patch_model(load_network("mnist"), applied)
    assert [m.array.g_sel for m in (net.get_submodule(p["layer"]) for p in rep["held_out"])] \
        == list(cal.g_sel_layers_s)
    with pytest.raises(ValueError, match="cols 16 vs the network's 64"):
        apply_calibration(AnalogConfig.build(cell="1t1r", tile_rows=16), back)


def test_check_samples_about_vectors_per_tile_reads_per_tile():
    """The SPICE check draws one tile per VECTORS_PER_TILE reads of a layer (at most the
    layer's tiles), each read a live word-line vector of that tile; a bad count is refused."""
    from spicecross.calibration.network_check import VECTORS_PER_TILE, sample_tile_reads
    from spicecross.nn.analog import analog_layers, patch_model
    from spicecross.nn.inference import load_eval_data, load_network
    from spicecross.surrogate.config import AnalogConfig

    cfg = AnalogConfig.build(tile_rows=32, tile_cols=32)
    data = load_eval_data("mnist", None, 8, 16)
    net = patch_model(load_network("mnist"), cfg, data.calibration)
    layers = dict(analog_layers(net))
    for per_tile in (VECTORS_PER_TILE, 4):
        sampled = sample_tile_reads(net, data.test.tensors[0], 32, 0, per_tile)
        for name, tiles in sampled.items():
            arr = layers[name].array
            assert len(tiles) == min(arr.n_row_tiles * arr.n_col_tiles, -(-32 // per_tile))
            assert sum(len(t.v) for t in tiles) <= 32
            assert all(np.abs(t.v).max(axis=1).min() > 0 for t in tiles)
    with pytest.raises(ValueError, match="vectors per tile must be a positive integer, got 0"):
        sample_tile_reads(net, data.test.tensors[0], 32, 0, 0)


def test_core_gate_holds_runs_to_its_slots_until_widened():
    """check_beside's gate: at most `slots` simulator runs at once; widening lets more in."""
    import threading
    import time

    from spicecross.calibration.network_check import CoreGate

    gate, inside, peak, lock = CoreGate(1), [0], [0], threading.Lock()

    def run():
        with gate:
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.05)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.12)
    assert peak[0] == 1 and gate.held <= 1
    gate.widen(3)
    for t in threads:
        t.join()
    assert gate.slots == 3 and gate.held == 0
    with pytest.raises(ValueError, match="at least 1 slot, got 0"):
        CoreGate(0)


def test_check_beside_passes_on_the_work_s_failure():
    """A failing work() ends check_beside with its own error (the pending runs are dropped)."""
    from spicecross.calibration.network_check import check_beside
    from spicecross.nn.analog import patch_model
    from spicecross.nn.inference import load_eval_data, load_network
    from spicecross.surrogate.config import AnalogConfig

    cfg = AnalogConfig.build(tile_rows=32, tile_cols=32)
    data = load_eval_data("mnist", None, 4, 16)
    net = patch_model(load_network("mnist"), cfg, data.calibration)

    def work():
        raise RuntimeError("work failed")

    with pytest.raises(RuntimeError, match="work failed"):
        check_beside(net, data.test.tensors[0], work, 4, cache_dir=None)
