"""SPICE in the loop: every array read of a network solved by a real simulator (VACASK,
ngspice), compared with the surrogate on the same images."""
import copy
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from spicecross.nn.analog import analog_layers, patch_model
from spicecross.nn.datasets import load_mnist_sample
from spicecross.nn.spice_loop import (SpiceLoopSettings, forward_in_spice, run_spice_loop,
                                      spice_reads)
from spicecross.nn.spice_loop_store import load_results, summarize
from spicecross.surrogate.config import AnalogConfig

from conftest import assert_plot_png


def small_cnn(seed: int = 0) -> nn.Module:
    """A small CNN on 12×12 crops of MNIST digits: conv 1→4, BN, ReLU, pool, conv 4→6, ReLU,
    flatten, linear 6·6·6 → 10 (random weights, seeded; classes are still classes)."""
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                      nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding=2, bias=False), nn.ReLU(),
                      nn.Flatten(), nn.Linear(6 * 8 * 8, 10))
    m[1].running_mean.uniform_(-0.2, 0.2)
    m[1].running_var.uniform_(0.5, 1.5)
    return m.eval()


def images(n: int, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_mnist_sample().tensors
    return x[offset:offset + n, :, 8:20, 8:20].contiguous(), y[offset:offset + n]


def patched(cell: str = "0t1r", tile: int = 16, **kw) -> nn.Module:
    cfg = AnalogConfig.build(tile_rows=tile, tile_cols=tile, cell=cell, **kw)
    return patch_model(small_cnn(), cfg, images(32, offset=500)[0])


SETTINGS = dict(n_jobs=2, cache_dir=None, progress=False)


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_0t1r_spice_loop_equals_surrogate_16x16():
    model = patched()
    x, _ = images(3)
    with torch.no_grad():
        sur = model(x)
    spice, readers = forward_in_spice(model, x, SpiceLoopSettings(**SETTINGS))
    assert torch.equal(spice.argmax(1), sur.argmax(1))
    assert rel_diff(spice, sur) <= 1e-6
    # every layer was read in VACASK, over several tiles, with errors far below one ADC step
    layers = dict(analog_layers(model))
    assert set(readers) == set(layers)
    for name, r in readers.items():
        arr = layers[name].array
        assert r.simulators == {"vacask"}
        assert r.reads >= 2 * arr.n_row_tiles * arr.n_col_tiles
        assert r.errors.max_lsb.shape == (3,)
        assert float(r.errors.max_lsb.max()) < 1e-4, (name, r.errors.max_lsb)
        assert int(r.errors.code_mismatch.sum()) == 0
    assert layers["4"].array.n_row_tiles == 3 and layers["7"].array.n_row_tiles == 24
    # the surrogate read path is back after the block
    assert all(m.array.reader is None and not m.array.uses_tile_reads for m in layers.values())
    with torch.no_grad():
        assert torch.equal(model(x), sur)


@pytest.mark.slow
def test_0t1r_spice_loop_equals_surrogate_64x64(tmp_path):
    """Default 64×64 tiles (one row tile for the convolutions, six for the linear layer),
    through the resumable driver; one image (a 64×64 read costs ≈ 40 ms of VACASK CPU)."""
    model = patched(tile=64)
    x, y = images(1)
    res = run_spice_loop(model, x, y, tmp_path / "r.h5", SpiceLoopSettings(**SETTINGS), "fp")
    assert res["images"] == 1 and res["class_differs_share"] == 0.0
    assert res["max_logit_rel_diff"] <= 1e-6
    assert [p["layer"] for p in res["per_layer"]] == ["0", "4", "7"]
    assert all(p["max_err_lsb"] < 1e-4 and p["code_mismatch_share"] == 0 for p in res["per_layer"])
    assert dict(analog_layers(model))["7"].array.n_row_tiles == 6


def test_spice_reads_really_go_through_the_simulator():
    """A wrong conductance in the simulated array shows up in the logits: the reads are not
    the surrogate's."""
    model = patched()
    x, _ = images(2)
    with torch.no_grad():
        sur = model(x)
    layer = dict(analog_layers(model))["7"]
    g = layer.array.g_dev.copy()
    layer.array.g_dev = g * 1.5                       # SPICE sees this; the readout does not
    spice, readers = forward_in_spice(model, x, SpiceLoopSettings(**SETTINGS))
    assert rel_diff(spice, sur) > 1e-2
    assert float(readers["7"].errors.max_lsb.max()) > 1.0


def test_resume_skips_finished_images(tmp_path):
    model = patched()
    x, y = images(4)
    out = tmp_path / "loop.h5"
    settings = SpiceLoopSettings(n_jobs=1, cache_dir=tmp_path / "cache", progress=False)
    first = run_spice_loop(model, x, y, out, settings, "fp", batch_images=2, max_batches=1)
    assert first["images"] == 2                      # "interrupted" after the first batch
    with h5py.File(out) as f:
        assert list(f["image_index"][()]) == [0, 1]
    logged = []
    full = run_spice_loop(model, x, y, out, settings, "fp", batch_images=2, log=logged.append)
    assert len(logged) == 1 and logged[0].startswith("images 2, 3:")   # only these were run
    assert full["images"] == 4
    res = load_results(out)
    assert list(res["image_index"]) == [0, 1, 2, 3]
    assert res["layers"]["7"]["max_err_lsb"].shape == (4,)
    # all four images agree with a fresh run of all four at once (the loop runs in float64)
    spice, _ = forward_in_spice(copy.deepcopy(model).double(), x.double(), settings)
    np.testing.assert_allclose(res["logits_spice"], spice.double().numpy(), rtol=0, atol=0)
    # a file of another run is refused, and so are other images under the same indices
    with pytest.raises(ValueError, match="another network"):
        run_spice_loop(model, x, y, out, settings, "other")
    with pytest.raises(ValueError, match="image 0 differs"):
        run_spice_loop(model, images(4, offset=100)[0], y, out, settings, "fp")


def test_dask_local_cluster_equals_local_run(tmp_path):
    pytest.importorskip("dask.distributed")
    from dask.distributed import LocalCluster

    model = patched()
    x, _ = images(2)
    local, _ = forward_in_spice(model, x, SpiceLoopSettings(**SETTINGS))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        dist, readers = forward_in_spice(model, x, SpiceLoopSettings(
            n_jobs=2, parallel_backend="dask", scheduler=cluster.scheduler_address,
            cache_dir=None, progress=False))
    assert torch.equal(local, dist)
    assert all(r.reads > 0 for r in readers.values())


def test_1t1r_two_images_report_per_layer_lsb_errors(tmp_path):
    model = patched("1t1r")
    x, y = images(2)
    res = run_spice_loop(model, x, y, tmp_path / "t.h5", SpiceLoopSettings(**SETTINGS), "fp")
    assert res["images"] == 2
    assert len(res["per_layer"]) == 3
    for p in res["per_layer"]:
        assert p["simulators"] == ["vacask"]         # two-phase: no negative word lines
        assert np.isfinite(p["max_err_lsb"]) and p["max_err_lsb"] > 0
        assert 0 < p["rms_err_lsb"] <= p["max_err_lsb"]
        assert p["array_reads"] > 0
    assert 0.0 <= res["class_differs_share"] <= 1.0


def test_1t1r_negative_word_lines_go_to_ngspice():
    model = patched("1t1r", read_scheme="bipolar")
    x, _ = images(1)
    with spice_reads(model, SpiceLoopSettings(**SETTINGS)) as readers:
        for r in readers.values():
            r.start_batch(1)
        with torch.no_grad():
            model(x)
    assert readers["0"].simulators == {"ngspice"}   # normalised images: negative inputs
    assert readers["4"].simulators == {"vacask"}    # after ReLU: non-negative


def test_uncalibrated_model_is_refused():
    cfg = AnalogConfig.build(tile_rows=16, tile_cols=16)
    model = patch_model(small_cnn(), cfg)
    with pytest.raises(RuntimeError, match="not calibrated"):
        with spice_reads(model):
            pass


def test_summary_of_stored_logits():
    res = {"image_index": np.arange(2), "label": np.array([1, 0]),
           "logits_spice": np.array([[0.0, 2.0], [1.0, 0.5]]),
           "logits_surrogate": np.array([[0.0, 1.5], [0.4, 0.5]]),
           "logits_digital": np.array([[0.0, 1.0], [0.0, 1.0]]),
           "seconds": np.array([1.0, 3.0]), "attrs": {"simulator": "vacask"}, "layers": {}}
    s = summarize(res)
    assert s["accuracy_spice"] == 100.0 and s["accuracy_surrogate"] == 50.0
    assert s["accuracy_digital"] == 50.0 and s["class_differs_share"] == 0.5
    assert s["max_logit_abs_diff"] == pytest.approx(0.6)
    assert s["max_logit_rel_diff"] == pytest.approx(0.6)
    assert s["seconds_per_image"] == 2.0


@pytest.mark.slow
def test_cli_verify_network_json_and_plot(tmp_path):
    """The shipped MNIST network on 16×16 tiles (many tiles per layer), one image."""
    out, png = tmp_path / "v.h5", tmp_path / "v.png"
    cmd = [sys.executable, "-m", "spicecross.cli", "verify-network", "--tile", "16x16",
           "--limit", "1", "--calibration-images", "16", "--spice-out", str(out), "--plot",
           str(png), "--jobs", "2", "--quiet", "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["images"] == 1 and rep["simulator"] == "vacask"
    assert rep["class_differs_share"] == 0.0 and rep["max_logit_rel_diff"] <= 1e-6
    assert len(rep["per_layer"]) == 5 and rep["max_err_lsb"] < 1e-3
    assert_plot_png(png)
    # infer --spice-loop on the same file resumes it: nothing left to solve
    r = subprocess.run([sys.executable, "-m", "spicecross.cli", "infer", "--spice-loop",
                        "--tile", "16x16", "--limit", "1", "--calibration-images", "16",
                        "--spice-out", str(out), "--quiet", "--json", "--no-cache"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    inf = json.loads(r.stdout)
    assert inf["accuracy"] == rep["accuracy_spice"] and inf["spice_loop"]["images"] == 1
    with h5py.File(out) as f:
        assert list(f["image_index"][()]) == [0]


def test_superposed_0t1r_spice_loop_equals_the_direct_one():
    model = patched()
    x, _ = images(2)
    direct, _ = forward_in_spice(model, x, SpiceLoopSettings(**SETTINGS))
    sup, readers = forward_in_spice(model, x, SpiceLoopSettings(**SETTINGS, superpose_linear=True))
    assert rel_diff(sup, direct) <= 1e-9
    # the first convolution reads its array with more distinct vectors than its 16 rows
    assert readers["0"].superposed > 0 and all(r.superposed <= r.reads for r in readers.values())


def test_cli_verify_network_superpose_linear_equals_direct(tmp_path):
    """--superpose-linear through the CLI: the same classes and logits as every read solved."""
    reps = []
    for extra in ([], ["--superpose-linear"]):
        out = tmp_path / f"v{len(extra)}.h5"
        cmd = [sys.executable, "-m", "spicecross.cli", "verify-network", "--tile", "16x16",
               "--cell", "0t1r", "--limit", "1", "--calibration-images", "16", "--spice-out",
               str(out), "--jobs", "1", "--quiet", "--json", "--no-cache", *extra]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        reps.append(json.loads(r.stdout))
    direct, sup = reps
    assert direct["superpose_linear"] is False and sup["superpose_linear"] is True
    assert sup["accuracy_spice"] == direct["accuracy_spice"]
    assert sup["max_logit_rel_diff"] <= 1e-6 and sup["max_err_lsb"] < 1e-3


@pytest.mark.slow
def test_verify_network_on_dask_without_scheduler_runs_one_local_cluster(tmp_path, monkeypatch):
    """The dask backend with no scheduler: one LocalCluster for the whole run (not one per
    layer call), with the same SPICE logits as the local run."""
    pytest.importorskip("dask.distributed")
    from spicecross.nn.spice_verify import verify_network
    from spicecross.spice import cluster

    started = []
    real = cluster.local_cluster
    monkeypatch.setattr(cluster, "local_cluster", lambda n=None: started.append(n) or real(n))
    cfg = AnalogConfig.build(tile_rows=16, tile_cols=16)
    common = dict(cache_dir=None, progress=False, superpose_linear=True)
    verify_network("mnist", None, cfg, tmp_path / "dask.h5", limit=1,
                   settings=SpiceLoopSettings(n_jobs=2, parallel_backend="dask", **common))
    assert started == [2]
    verify_network("mnist", None, cfg, tmp_path / "local.h5", limit=1,
                   settings=SpiceLoopSettings(n_jobs=1, **common))
    np.testing.assert_array_equal(load_results(tmp_path / "dask.h5")["logits_spice"],
                                  load_results(tmp_path / "local.h5")["logits_spice"])
