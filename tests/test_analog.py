"""Network inference on crossbar tiles: mapping, modes, converters, non-idealities, CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from spicecross.circuit.tile import TileSpec
from spicecross.nn.analog import AnalogConv2d, AnalogLinear, analog_layers, patch_model
from spicecross.nn.tiles import parse_tile
from spicecross.nn.inference import load_eval_data, load_network, run_analog
from spicecross.surrogate import nonidealities as ni
from spicecross.surrogate.compensation import compensate_ir_drop
from spicecross.surrogate.config import AnalogConfig
from spicecross.surrogate.nonidealities import NonIdealityConfig
from spicecross.surrogate.transfer import transfer_matrices

# ideal converters and wires: what is left is the mapping itself
EXACT = dict(dac_bits=None, adc_bits=None, r_wire_ohm=0.0, ir_compensation=False)


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch):
    monkeypatch.delenv("SPICECROSS_DATA", raising=False)


@pytest.fixture(scope="module")
def mnist():
    """The shipped MNIST network and 300 images of the bundled sample (+ calibration images)."""
    data = load_eval_data("mnist", None, 300, calibration_images=128)
    return load_network("mnist"), data


def _small_linear(in_f=40, out_f=24, seed=0):
    torch.manual_seed(seed)
    lin = nn.Linear(in_f, out_f).double()
    return nn.Sequential(lin)


# ---------------------------------------------------------------- mapping and linear mode
def test_linear_mode_equals_per_tile_transfer_computation():
    """40→24 Linear on 16×16 tiles (3×2 tiles, neither dimension divides): the layer output is
    Σ_row-tiles (T⁺ − T⁻)·v, scaled back by the known inverse of the mapping, plus bias."""
    model = _small_linear()
    cfg = AnalogConfig.build(tile_rows=16, tile_cols=16, r_wire_ohm=0.7, mode="linear",
                       dac_bits=None, adc_bits=None, v_read_v=0.3)
    x = torch.randn(5, 40, dtype=torch.float64)
    pm = patch_model(model, cfg, x)
    layer = pm[0]
    assert isinstance(layer, AnalogLinear)
    assert (layer.n_row_tiles, layer.n_col_tiles) == (3, 2)
    spec = cfg.tile_spec()
    v = (x / layer.calibration.x_fs).clamp(-1, 1) * 0.3                      # DAC without quantization
    expected = torch.zeros(5, 24, dtype=torch.float64)
    for r in range(3):
        vt = torch.zeros(5, 16, dtype=torch.float64)
        rows = layer.array.tile_rows_of(r)
        vt[:, :rows.stop - rows.start] = v[:, rows]
        for c in range(2):
            gp, gm = layer.array.tile_device_conductances(r, c)
            Tp, Tm = transfer_matrices(spec, gp), transfer_matrices(spec, gm)
            cur = vt @ (Tp - Tm).T
            cols = slice(16 * c, min(16 * c + 16, 24))
            expected[:, cols] += cur[:, :cols.stop - cols.start]
    span = layer.array.g_hi - layer.array.g_lo
    expected = expected * (layer.calibration.x_fs / 0.3) * (layer.array.w_max / span) + model[0].bias
    got = pm(x)
    assert torch.allclose(got, expected, rtol=1e-9, atol=1e-12)
    # the wires matter: without them the result is visibly different
    ideal = patch_model(model, cfg.with_(mode="ideal"), x)(x)
    assert (ideal - got).abs().max() > 1e-3 * got.abs().max()


def test_ideal_mapping_is_exact_inverse_and_conv_too():
    """With ideal converters and wires, a patched model equals the digital one: the scaling back
    is the known inverse of the mapping (no fitted correction)."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1, stride=2, bias=True), nn.ReLU(),
                          nn.Flatten(), nn.Linear(5 * 4 * 4, 7)).double()
    x = torch.randn(6, 3, 8, 8, dtype=torch.float64)
    for cell in ("0t1r", "1t1r"):
        pm = patch_model(model, AnalogConfig.build(tile_rows=8, tile_cols=4, mode="linear", cell=cell,
                                             **EXACT), x)
        assert isinstance(pm[0], AnalogConv2d) and isinstance(pm[3], AnalogLinear)
        assert torch.allclose(pm(x), model(x), rtol=1e-10, atol=1e-10)
    # the user's model is untouched
    assert isinstance(model[0], nn.Conv2d)


def test_double_column_arrays_are_positive_and_differential():
    model = _small_linear(20, 12)
    cfg = AnalogConfig.build(tile_rows=8, tile_cols=8, r_wire_ohm=0.5, dac_bits=None, adc_bits=None,
                       v_read_v=0.2)
    x = torch.rand(4, 20, dtype=torch.float64)
    layer = patch_model(model, cfg, x)[0]
    w = model[0].weight.detach().numpy().T
    g_lo, g_hi = 1 / 2500, 1 / 100
    for r in range(layer.n_row_tiles):
        for c in range(layer.n_col_tiles):
            gp, gm = layer.array.tile_device_conductances(r, c)
            assert gp.min() >= g_lo * (1 - 1e-12) and gm.min() >= g_lo * (1 - 1e-12)
            assert gp.max() <= g_hi * (1 + 1e-12) and gm.max() <= g_hi * (1 + 1e-12)
            ip, im = layer.array.read_tile(r, c, np.full((2, 8), 0.1))
            assert (ip > 0).all() and (im > 0).all()
    gp, gm = layer.array.tile_device_conductances(0, 0)
    diff = (gp - gm)[:8, :8]
    ratio = diff / w[:8, :8]
    assert np.allclose(ratio, ratio.flat[0], rtol=1e-9)     # G⁺ − G⁻ ∝ W
    assert ((gp == g_lo) | (gm == g_lo)).all()              # one of each pair at g_lo


def test_1t1r_selector_aware_mapping_programs_inverse_series():
    model = _small_linear(16, 8)
    x = torch.rand(4, 16, dtype=torch.float64)
    cfg = AnalogConfig.build(tile_rows=16, tile_cols=8, cell="1t1r", mode="ideal", dac_bits=None,
                       adc_bits=None)
    layer = patch_model(model, cfg, x)[0]
    g_sel = cfg.g_sel
    gp, _ = layer.array.tile_device_conductances(0, 0)
    cell = gp * g_sel / (gp + g_sel)
    w = model[0].weight.detach().numpy().T
    pos = w > 0
    # the effective cell conductance, not the device's, is linear in W
    slope = (cell[pos] - layer.array.g_lo) / w[pos]
    assert np.allclose(slope, slope[0], rtol=1e-9)
    assert gp.max() <= 1 / 100 * (1 + 1e-12)
    naive = patch_model(model, cfg.with_(selector_aware=False), x)
    assert not torch.allclose(naive(x), model(x), rtol=1e-3)   # the selector distorts weights
    assert torch.allclose(patch_model(model, cfg, x)(x), model(x), rtol=1e-9, atol=1e-9)


def test_ir_compensation_makes_the_transfer_ideal():
    spec = TileSpec.uniform_wires(16, 16, 0.5)
    rng = np.random.default_rng(0)
    target = 1 / 2500 + 0.3 * (1 / 100 - 1 / 2500) * rng.random((2, 16, 16))
    g, resid = compensate_ir_drop(spec, target, 1 / 2500, 1 / 100)
    assert resid < 1e-4
    T = transfer_matrices(spec, g).transpose(-1, -2).numpy()
    assert np.abs(T - target).max() / target.max() < 1e-4
    raw = transfer_matrices(spec, target).transpose(-1, -2).numpy()
    assert np.abs(raw - target).max() / target.max() > 0.05


# ---------------------------------------------------------------- converters, states, faults
def _acc(model, data, cfg):
    return run_analog(model, cfg, data, batch_size=300)["accuracy"]


def test_conductance_states_visibly_act(mnist):
    """MemTorch's issue #140: changing the number of states did not change accuracy."""
    model, data = mnist
    base = AnalogConfig.build(mode="ideal", r_wire_ohm=0.0)
    a2 = _acc(model, data, base.with_(conductance_states=2))
    a256 = _acc(model, data, base.with_(conductance_states=256))
    assert a256 > 95.0
    assert a2 < a256 - 5.0
    pm = patch_model(model, base.with_(conductance_states=2), data.calibration)
    for _, layer in analog_layers(pm):
        assert len(np.unique(np.round(layer.array.g_dev, 12))) <= 2
    x = data.test.tensors[0][:20]
    with torch.no_grad():
        assert not torch.allclose(pm(x), patch_model(model, base.with_(conductance_states=256),
                                                     data.calibration)(x))


def test_low_resolution_adc_loses_accuracy(mnist):
    model, data = mnist
    base = AnalogConfig.build(mode="ideal", r_wire_ohm=0.0)
    a8 = _acc(model, data, base.with_(adc_bits=8))
    a3 = _acc(model, data, base.with_(adc_bits=3))
    digital = run_analog(model, AnalogConfig.build(mode="ideal", **EXACT), data)["accuracy"]
    assert a8 >= digital - 1.0
    assert a3 < a8 - 3.0


def test_stuck_at_lrs_hurts_more_than_hrs(mnist):
    model, data = mnist
    base = AnalogConfig.build(mode="ideal", r_wire_ohm=0.0)
    hrs = _acc(model, data, base.with_(stuck_hrs_p=0.05))
    lrs = _acc(model, data, base.with_(stuck_lrs_p=0.05))
    assert hrs > lrs + 10.0


def test_seeded_reproducibility(mnist):
    model, data = mnist
    x = data.test.tensors[0][:30]
    cfg = AnalogConfig.build(mode="ideal", r_wire_ohm=0.0, seed=7).with_(
        sigma_r_on_ohm=25.0, sigma_r_off_ohm=50.0, stuck_hrs_p=0.02, stuck_lrs_p=0.01)
    outs = []
    for c in (cfg, cfg, cfg.with_(seed=8)):
        with torch.no_grad():
            outs.append(patch_model(model, c, data.calibration)(x))
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], outs[2])


def test_nonideality_models():
    g = np.array([1 / 100, 1 / 300, 1 / 2000, 1 / 2500])
    # sudden (MemTorch tutorial): threshold 1 cycle, LRS → 100 Ω, HRS → 1000 Ω
    sud = ni.ENDURANCE_MODELS["memtorch_tutorial_sudden"]
    out = ni.apply_endurance(g, 1e4, sud, 100.0, 2500.0)
    assert np.allclose(1 / out, [100, 100, 1000, 1000])
    assert np.allclose(ni.apply_endurance(g, 1.0, sud, 100.0, 2500.0), g)
    # gradual (Lammie 2021 fit): threshold 10^4 cycles, R·(x/x_th)^(p3·p1·s), capped at R_c
    grad = ni.ENDURANCE_MODELS["lammie2021_gradual"]
    assert grad.threshold_cycles(grad.p_lrs, 300.0) == pytest.approx(1e4)
    assert np.allclose(ni.apply_endurance(g, 1e4, grad, 100.0, 2500.0), g)
    out = 1 / ni.apply_endurance(g, 1e6, grad, 100.0, 2500.0)
    k_lrs = grad.p_lrs[3] * grad.p_lrs[1] * 10
    assert out[0] == pytest.approx(100 * 100 ** k_lrs)
    assert out[3] < 2500 and out[3] >= 1300
    # retention drift
    assert np.allclose(ni.apply_retention(g, 1e4, 0.1, 1.0), g * 1e4 ** -0.1)
    assert np.allclose(ni.apply_retention(g, 0.5, 0.1, 1.0), g)
    # states
    q = ni.quantize_states(np.linspace(1 / 2500, 1 / 100, 50), 1 / 2500, 1 / 100, 3)
    assert len(np.unique(np.round(q, 12))) == 3
    with pytest.raises(ValueError, match="states"):
        ni.quantize_states(q, 1 / 2500, 1 / 100, 1)
    # variability: σ = 0 is the identity, σ > 0 moves every level
    rng = np.random.default_rng(0)
    w0 = ni.sample_device_windows(g.shape, 100, 2500, 0, 0, rng)
    assert np.allclose(ni.apply_variability(g, w0), g)
    w1 = ni.sample_device_windows(g.shape, 100, 2500, 25, 50, rng)
    assert not np.allclose(ni.apply_variability(g, w1), g)
    with pytest.raises(ValueError, match="stuck"):
        NonIdealityConfig(stuck_hrs_p=0.7, stuck_lrs_p=0.5)


def test_config_json_roundtrip_and_checks():
    cfg = AnalogConfig.build(tile_rows=128, tile_cols=64, cell="1t1r", g_sel_s=4e-3).with_(
        sigma_r_on_ohm=10.0, retention_s=100.0)
    again = AnalogConfig.from_json(cfg.to_json())
    assert again == cfg
    assert json.loads(cfg.to_json())["nonideal"]["sigma_r_on_ohm"] == 10.0
    for bad in (dict(adc_bits=0), dict(tile_rows=0), dict(mode="fast"), dict(r_wire_ohm=-1.0),
                dict(conductance_states=1), dict(max_input_voltage_v=0.0)):
        with pytest.raises(ValueError):
            AnalogConfig.build(**bad)
    assert parse_tile("64x32") == (64, 32)
    with pytest.raises(ValueError, match="64y64"):
        parse_tile("64y64")


# ---------------------------------------------------------------- SPICE fidelity
def test_patched_tile_against_ngspice():
    """One tile of a patched layer, solved by ngspice: 0T1R linear mode within 1e-6; 1T1R
    nonlinear mode within the nonlinear surrogate's tolerance (1e-6 as in test_surrogate)."""
    from spicecross.spice.solve import solve_tile

    model = _small_linear(16, 16, seed=3)
    x = torch.rand(3, 16, dtype=torch.float64)
    for cell, mode in (("0t1r", "linear"), ("1t1r", "nonlinear")):
        cfg = AnalogConfig.build(tile_rows=16, tile_cols=16, cell=cell, mode=mode, r_wire_ohm=1.0,
                           v_read_v=0.2, dac_bits=8, adc_bits=8)
        layer = patch_model(model, cfg, x)[0]
        (_, v), = layer._dac(x[:1], layer.calibration)      # non-negative inputs: one phase
        v = v.numpy()[0]
        for s, g in enumerate(layer.array.tile_device_conductances(0, 0)):
            ref = solve_tile(cfg.tile_spec(), g, v, backend="ngspice", cache_dir=None)
            assert ref.ok, ref.error
            got = layer.array.read_tile(0, 0, v[None])[s][0]
            err = np.abs(got - ref.sense_currents_a).max() / np.abs(ref.sense_currents_a).max()
            assert err < 1e-6, (cell, s, err)


# ---------------------------------------------------------------- CLI
def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "spicecross.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_cli_infer_json_runs():
    r = _cli("infer", "--model", "mnist", "--limit", "200", "--tile", "64x64", "--adc-bits", "8",
             "--miv", "9", "--spice-check", "0", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert {"accuracy", "digital_accuracy", "seconds", "images"} <= set(out)
    assert out["images"] == 200 and out["read_voltage_v"] == pytest.approx(0.2)
    assert out["read_scheme"] == "two-phase" and "spice_check" not in out
    assert out["accuracy"] >= out["digital_accuracy"] - 3.0


def test_cli_infer_spice_check_0t1r_is_exact(capsys):
    """Every network answer carries its SPICE error: for 0T1R tiles the linear read is exact,
    so VACASK and the surrogate agree to rounding on reads sampled from the real network."""
    from spicecross.cli import main

    assert main(["infer", "--limit", "50", "--spice-check", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    chk = out["spice_check"]
    assert chk["simulator"] == "vacask" and len(chk["per_layer"]) == 5
    assert chk["reads"] == 15 and chk["share_within_1_lsb"] == 1.0
    assert chk["max_rel_err"] < 1e-9 and chk["max_err_lsb"] < 1e-6
    assert {"layer", "reads", "max_err_lsb", "rms_err_lsb", "max_rel_err",
            "code_mismatch_share"} <= set(chk["per_layer"][0])


def test_check_beside_the_inference_equals_the_check_alone():
    """The SPICE check solved in a background thread while other work runs gives the report
    the check gives alone, and the work's own result."""
    from spicecross.calibration.network_check import check_beside, spice_check
    from spicecross.nn.inference import load_eval_data, load_network

    cfg = AnalogConfig.build(cell="1t1r", tile_rows=32, tile_cols=32)
    data = load_eval_data("mnist", None, 8, 16)
    net = patch_model(load_network("mnist"), cfg, data.calibration)
    x = data.test.tensors[0]
    alone = spice_check(net, x, 2, cache_dir=None)
    ran = []
    out, beside = check_beside(net, x, lambda: ran.append(torch.get_num_threads()) or 42, 2,
                               cache_dir=None)
    assert out == 42 and len(ran) == 1
    alone.pop("seconds"), beside.pop("seconds")
    assert beside == alone and beside["reads"] == 10


def test_mismatched_calibration_is_refused(tmp_path, capsys):
    from spicecross.calibration.calibrate import Calibration, save_calibration
    from spicecross.cli import main

    cal = Calibration(TileSpec(rows=4, cols=4, cell="1t1r"), 4e-3, {}, "linear",
                      {"v_read_max_v": 0.2})
    path = save_calibration(tmp_path / "cal.h5", cal, {"x": np.zeros(1)})
    assert main(["infer", "--cell", "1t1r", "--calibration", str(path), "--limit", "10",
                 "--spice-check", "0", "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "rows 4 vs the network's 64" in err, err


@pytest.mark.parametrize("args,needle", [
    (["--tile", "64y64"], "64y64"),
    (["--adc-bits", "0"], "--adc-bits '0'"),
    (["--miv", "-1"], "--miv '-1'"),
    (["--stuck-lrs", "1.5"], "--stuck-lrs '1.5'"),
    (["--cell", "2t2r"], "2t2r"),
    (["--model", "cifar10"], "weights"),
])
def test_cli_bad_input_one_line(args, needle, capsys):
    from spicecross.cli import main

    assert main(["infer", "--limit", "10", *args, "--json"]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], err


def test_cli_infer_cifar_with_weights(tmp_path, capsys):
    """CIFAR models run when given a checkpoint (here random weights on synthetic CIFAR-shaped
    files in torchvision's layout; the accuracy means nothing, the path is what is tested)."""
    import pickle

    from spicecross.cli import main
    from spicecross.nn.models import build_model
    from spicecross.nn.train import CHECKPOINT_FORMAT

    rng = np.random.default_rng(0)
    base = tmp_path / "data" / "cifar-10-batches-py"
    base.mkdir(parents=True)
    for fname in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(base / fname, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (40, 3072), dtype=np.uint8),
                         b"labels": [int(v) for v in rng.integers(0, 10, 40)]}, f)
    torch.manual_seed(0)
    net = build_model("cifar10")
    ckpt = tmp_path / "c10.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "model": "cifar10", "seed": 0,
                "state_dict": net.state_dict()}, ckpt)
    # ideal converters and wires: the analog network must classify exactly as the digital one
    assert main(["infer", "--model", "cifar10", "--weights", str(ckpt), "--data",
                 str(tmp_path / "data"), "--limit", "20", "--spice-check", "0", "--mode", "ideal",
                 "--adc-bits", "none", "--dac-bits", "none", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["images"] == 20 and out["accuracy"] == out["digital_accuracy"]
    assert round(out["accuracy"] * 20 / 100, 6).is_integer()
    # a checkpoint of another model is refused with one line
    assert main(["infer", "--model", "cifar100", "--weights", str(ckpt), "--data",
                 str(tmp_path / "data"), "--limit", "20", "--json"]) == 2
    assert "cifar10" in capsys.readouterr().err


# ---------------------------------------------------------------- physical reads
def test_two_phase_reads_keep_word_lines_non_negative_and_equal_bipolar_when_exact():
    """Signed inputs are read as x⁺ then x⁻ with non-negative voltages; with ideal converters
    and linear cells that is exactly the bipolar read, and both equal the digital layer."""
    model = _small_linear(24, 10, seed=4)
    x = torch.randn(6, 24, dtype=torch.float64)
    cfg = AnalogConfig.build(tile_rows=8, tile_cols=8, r_wire_ohm=0.0, dac_bits=None,
                             adc_bits=None)
    assert cfg.read_voltage_v == pytest.approx(0.2)           # 0.4 × 0.5 V of pt_hf_ti
    two = patch_model(model, cfg, x)
    layer = two[0]
    phases = layer._dac(x, layer.calibration)
    assert [s for s, _ in phases] == [1.0, -1.0]
    assert all(float(v.min()) >= 0 and float(v.max()) <= 0.2 + 1e-12 for _, v in phases)
    bip = patch_model(model, cfg.with_(read_scheme="bipolar"), x)
    assert len(bip[0]._dac(x, bip[0].calibration)) == 1
    with torch.no_grad():
        assert torch.allclose(two(x), model(x), rtol=1e-10, atol=1e-10)
        assert torch.allclose(bip(x), model(x), rtol=1e-10, atol=1e-10)
    # non-negative inputs read once
    xp = x.abs()
    assert len(layer._dac(xp, patch_model(model, cfg, xp)[0].calibration)) == 1


def test_two_phase_uses_the_full_unsigned_dac_range():
    """With a 4-bit DAC, two phases resolve signed inputs twice as finely as a signed DAC."""
    model = _small_linear(16, 8, seed=5)
    x = torch.randn(200, 16, dtype=torch.float64)
    cfg = AnalogConfig.build(tile_rows=16, tile_cols=8, r_wire_ohm=0.0, dac_bits=4, adc_bits=None)
    with torch.no_grad():
        ref = model(x)
        err_two = (patch_model(model, cfg, x)(x) - ref).abs().mean()
        err_bip = (patch_model(model, cfg.with_(read_scheme="bipolar"), x)(x) - ref).abs().mean()
    assert err_two < 0.7 * err_bip


def test_reads_above_threshold_warn_with_the_share():
    model = _small_linear(16, 8)
    x = torch.rand(4, 16, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match=r"switch devices"):
        patch_model(model, AnalogConfig.build(tile_rows=16, tile_cols=8, v_read_v=1.0), x)
    with pytest.raises(ValueError, match="read_scheme"):
        AnalogConfig.build(read_scheme="tri-phase")
    with pytest.raises(ValueError, match="v_read_v"):
        AnalogConfig.build(v_read_v=float("inf"))
