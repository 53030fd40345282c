"""compat="memtorch" (each step against what its MemTorch 1.1.6 source does), drift
re-calibration, and hardware-aware training."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from spicecross.nn.analog import AnalogLinear, analog_layers, patch_model
from spicecross.nn.calibrator import last_recalibration_s
from spicecross.nn.hw_train import train_hardware_aware, unwrap, wrap
from spicecross.nn.inference import load_eval_data, load_network, run_analog, synthetic_data
from spicecross.nn.models import build_model
from spicecross.surrogate import memtorch_compat as mc
from spicecross.surrogate import nonidealities as ni
from spicecross.surrogate.config import AnalogConfig


# ---- each step on small inputs -----------------------------------------------------------------
def test_naive_scale_rescales_only_above_miv_and_per_image_for_conv():
    x = torch.tensor([[0.5, -2.0], [0.25, 0.5]])
    # Linear: one amax over the whole batch (memtorch/mn/Linear.py), 2 > 1 → × 1/2
    assert torch.allclose(mc.naive_scale(x, 1.0, per_sample=False), x / 2)
    # below MIV: returned unchanged (map/Input.py: input_range <= MIV → input)
    assert torch.equal(mc.naive_scale(x, 3.0, per_sample=False), x)
    # Conv2d: per image (memtorch/mn/Conv2d.py loops over the batch)
    y = mc.naive_scale(x.view(2, 1, 1, 2), 1.0, per_sample=True).view(2, 2)
    assert torch.allclose(y[0], x[0] / 2) and torch.equal(y[1], x[1])


def test_adc_is_memtorchs_power_of_two_range_per_vector():
    i = torch.tensor([[0.3, -0.1, 0.05], [3.0, -1.0, 0.5]])
    q = mc.adc_quantize(i, bits=4)
    # vector 0: max 0.3 → integral ceil(log2 0.3) = −1, δ = 2^(1−4−1) = 1/16, floor(v/δ + 0.5)
    assert torch.allclose(q[0], torch.tensor([5 / 16, -2 / 16, 1 / 16]))
    # vector 1 gets its own range: δ = 2^(1−4+2) = 1/2; 3.0 clamps at 2^(4−1) − 1 = 7 codes
    assert torch.allclose(q[1], torch.tensor([3.0, -1.0, 0.5]))
    # a constant vector is returned as is (quantize.h: unique_consecutive check)
    c = torch.full((1, 3), 0.37)
    assert torch.equal(mc.adc_quantize(c, 4), c)
    # groups of tile_cols columns are digitized apart (one tile result each)
    two = torch.tensor([[1.0, 0.01, 0.01, 0.011]])
    assert float(mc.adc_quantize(two, 4, tile_cols=2)[0, 1]) == 0.0
    assert float(mc.adc_quantize(two, 4, tile_cols=2)[0, 3]) > 0.0
    # ideal ADC: identity
    assert torch.equal(mc.adc_quantize(i, None), i)


def test_linear_fit_is_least_squares_with_intercept():
    o = torch.linspace(-1, 1, 101)
    coef, intercept = mc.linear_fit(o, 3.0 * o + 0.25)
    assert coef == pytest.approx(3.0) and intercept == pytest.approx(0.25)


def test_program_clip_reaches_targets_inside_each_window():
    g = np.array([1e-3, 5e-3, 9.9e-3])
    r_on = np.array([100.0, 300.0, 100.0])
    r_off = np.array([2500.0, 2500.0, 200.0])
    out = mc.program_clip(g, r_on, r_off)
    assert out[0] == g[0]                       # inside: exact (no open-loop error)
    assert out[1] == pytest.approx(1 / 300.0)   # clipped to its own 1/R_on
    assert out[2] == pytest.approx(9.9e-3)      # 1/R_on = 1e-2 > target; 1/R_off = 5e-3 < target


def test_endurance_convergence_is_vteam_class_defaults():
    assert mc.endurance_convergence_ohm() == 550.0          # 50 + 1000/2
    p = ni.ENDURANCE_MODELS["memtorch_tutorial_sudden"]
    g = 1.0 / np.array([200.0, 800.0, 2000.0])
    ours = 1.0 / ni.apply_endurance(g, 1e4, p, 100.0, 2500.0)
    theirs = 1.0 / ni.apply_endurance(g, 1e4, p, 100.0, 2500.0, convergence_ohm=550.0,
                                      bounded=False)
    assert list(ours) == pytest.approx([100.0, 100.0, 1000.0])     # split at 1300 Ω
    assert list(theirs) == pytest.approx([100.0, 1000.0, 1000.0])  # split at 550 Ω


def test_config_fields_validated():
    with pytest.raises(ValueError, match="compat"):
        AnalogConfig(compat="memtorch2")
    with pytest.raises(ValueError, match="recalibrate_after_s"):
        AnalogConfig(recalibrate_after_s=0.0)
    with pytest.raises(ValueError, match="tune_"):
        AnalogConfig(compat="memtorch", recalibrate_after_s=10.0)
    cfg = AnalogConfig.build(compat="memtorch")
    assert AnalogConfig.from_json(cfg.to_json()) == cfg
    t = AnalogConfig.build(retention_s=2500.0, recalibrate_after_s=1000.0)
    assert last_recalibration_s(t) == 2000.0
    assert last_recalibration_s(t.with_(retention_s=500.0)) is None


def test_tune_fits_the_crossbar_to_the_digital_layer():
    torch.manual_seed(0)
    lin = nn.Linear(40, 6)
    cfg = AnalogConfig.build(tile_rows=16, tile_cols=4, compat="memtorch", r_wire_ohm=0.0)
    layer = AnalogLinear(lin, cfg)
    x = torch.rand(64, 40) * 2 - 1
    layer.calibration = layer.fit_calibration(x)
    coef, intercept = layer.tune_memtorch(torch.Generator().manual_seed(0))
    # ideal wires: crossbar = (G⁺ − G⁻)·x, so coef = w_max/(g_hi − g_lo), intercept ≈ 0
    a = layer.array
    assert coef == pytest.approx(a.w_max / (a.g_hi - a.g_lo), rel=0.02)
    y = layer(x)
    assert torch.allclose(y, lin(x), atol=0.05 * float(lin(x).abs().max()))


def test_compat_faults_come_after_tune():
    torch.manual_seed(0)
    cfg = AnalogConfig.build(tile_rows=16, tile_cols=4, compat="memtorch", stuck_lrs_p=0.2)
    model = nn.Sequential(nn.Linear(20, 4))
    analog = patch_model(model, cfg)
    arr = analog_layers(analog)[0][1].array
    at_lrs = lambda: int(np.isclose(arr.g_dev, 1 / 100.0).sum())   # noqa: E731
    assert at_lrs() <= 2                       # programmed: only the full-scale weight(s)
    from spicecross.nn.calibrator import calibrate_model
    calibrate_model(analog, torch.rand(8, 20))
    assert at_lrs() > 0.1 * arr.g_dev.size     # after tune_: ≈20 % stuck at LRS


# ---- whole network on the bundled sample -----------------------------------------------------
@pytest.fixture(scope="module")
def sample():
    return load_network("mnist"), load_eval_data("mnist", None, 300, 128)


def _acc(sample, **kw) -> float:
    model, data = sample
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return run_analog(model, AnalogConfig.build(calibration_images=128, **kw), data)["accuracy"]


def test_miv_sweep_in_compat_rises_with_miv(sample):
    accs = [_acc(sample, compat="memtorch", max_input_voltage_v=v) for v in (1.0, 2.0, 4.0)]
    assert accs[0] < accs[1] <= accs[2] + 1.0
    assert accs[2] - accs[0] > 20.0
    physical = [_acc(sample, max_input_voltage_v=v) for v in (1.0, 4.0)]
    assert physical[0] == physical[1]                               # MIV cancels physically


def test_recalibration_after_drift_restores_accuracy(sample):
    fresh = _acc(sample)
    drifted = _acc(sample, retention_s=1e4)
    recal = _acc(sample, retention_s=1e4, recalibrate_after_s=1e4)
    assert drifted < fresh - 20.0
    assert recal >= fresh - 1.0
    assert _acc(sample, compat="memtorch", retention_s=1e4) >= fresh - 2.0   # tune_ re-run


# ---- hardware-aware training -----------------------------------------------------------------
def test_hardware_aware_training_beats_plain_training_under_1_ohm_wires(sample):
    model, data = sample
    x, y = data.test.tensors
    train = TensorDataset(x[:200], y[:200])        # a short run on the sample's test images
    cfg = AnalogConfig.build(r_wire_ohm=1.0, tile_rows=32, tile_cols=32, calibration_images=32)
    plain = run_analog(model, cfg, data)["accuracy"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        trained, info = train_hardware_aware(model, cfg, train, data.calibration[:32],
                                             batch_size=50, lr=5e-4, reprogram_every=4,
                                             max_steps=12, epochs=3)
        hw = run_analog(trained, cfg, data)["accuracy"]
    assert info["steps"] == 12 and info["programmings"] == 3
    assert hw > plain + 10.0


def test_wrap_unwrap_and_cifar_paths_on_synthetic_data():
    model = build_model("cifar10").eval()
    data = synthetic_data("cifar10", 8, calibration_images=4)
    hw = wrap(model)
    assert sum(1 for m in hw.modules() if type(m).__name__ == "HardwareAwareLayer") == 8
    assert set(unwrap(hw).state_dict()) == set(model.state_dict())
    cfg = AnalogConfig.build(mode="ideal", calibration_images=4)   # no transfer matrices: fast
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        trained, info = train_hardware_aware(model, cfg, data.test, data.calibration,
                                             batch_size=4, max_steps=2, reprogram_every=2)
    assert math.isfinite(info["loss"]) and info["programmings"] == 1
    out = trained(data.test.tensors[0][:2])
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    for name in ("cifar10", "cifar100"):
        res = run_analog(build_model(name).eval(), cfg.with_(compat="memtorch"),
                         synthetic_data(name, 4, calibration_images=4))
        assert 0.0 <= res["accuracy"] <= 100.0
