"""Reads in code units (``_AnalogLayer._read_codes_into``): DAC codes in, ADC codes out, with the
DAC's volts per code and the ADC's steps per ampere multiplied into the read matrices before
the read instead of applied one pass at a time after it.

In exact arithmetic both give the same codes; in float32 each rounds differently, so a code can
differ where a current sits within an ulp of a code boundary. The exact reference is the same
read in float64 (the surrogate that matches SPICE to ≈1e-11): the float32 code-unit path must
not miss it more often than the float32 read in amperes does.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import small_analog_config

from spicecross.nn.analog import AnalogConv2d, AnalogLinear, patch_model
from spicecross.surrogate.converters import DAC, adc_codes_, adc_steps


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 6, 3, padding=1, stride=2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 6 * 6, 5))


_config = small_analog_config


def _layers(model):
    return [m for m in model.modules() if isinstance(m, (AnalogConv2d, AnalogLinear))]


def _layer_inputs(model, x):
    """Each analog layer's input for the batch ``x``."""
    seen = []
    hooks = [m.register_forward_pre_hook(lambda m, i: seen.append(i[0].clone()))
             for m in _layers(model)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


def _codes_in_amperes(layer, x, dtype):
    """ADC codes of every phase and row tile: the DAC in volts, the read in A, the code by a
    division by the range (the path of ``quantize_currents_``), in ``dtype``."""
    cal, s = layer.calibration, adc_steps(layer.config.adc_bits)
    out = []
    for _, v in layer._dac(x.to(dtype), cal):
        for r0, block in layer._current_blocks(v):
            for j, i in enumerate(block):
                rng = cal.adc_range_a[r0 + j].to(dtype).view((-1,) + (1,) * (i.dim() - 2))
                out.append(i.div(rng).clamp_(-1.0, 1.0).mul_(s).round_())
    return out


def _codes_in_code_units(layer, x):
    cal = layer.calibration
    reads, _ = layer._code_reads(cal, x.dtype)
    return [adc_codes_(y.clone(), layer.config.adc_bits) for _, d in layer._dac_codes(x, cal)
            for _, block in layer._current_blocks(d, reads) for y in block]


@pytest.mark.parametrize("kw", [dict(), dict(cell="1t1r", mode="polynomial"),
                                dict(read_scheme="bipolar", adc_bits=8)],
                         ids=["0t1r", "1t1r-polynomial", "bipolar"])
def test_float32_codes_miss_float64_no_more_than_the_read_in_amperes(kw):
    """On 300 images (signed first layer: two phases), every float32 ADC code of the code-unit
    path is within one step of the float64 read's, and it differs from it no more often than
    the float32 read in amperes (plus 2e-5 of the codes), both well under 1e-4."""
    torch.manual_seed(7)
    x = torch.randn(300, 3, 12, 12)
    pm = patch_model(_net(), _config(**kw), x[:64])
    total = miss_codes = miss_amps = 0
    for layer, xin in zip(_layers(pm), _layer_inputs(pm, x)):
        ref = _codes_in_amperes(layer, xin, torch.float64)
        new = _codes_in_code_units(layer, xin)
        old = _codes_in_amperes(layer, xin, torch.float32)
        assert [c.shape for c in new] == [c.shape for c in ref]
        for n, o, r in zip(new, old, ref):
            r = r.float()
            assert float((n - r).abs().max()) <= 1.0
            miss_codes += int((n != r).sum())
            miss_amps += int((o != r).sum())
            total += r.numel()
    assert total > 100_000
    assert miss_codes <= miss_amps + 2e-5 * total and miss_codes <= 1e-4 * total, \
        (miss_codes, miss_amps, total)


def test_float32_layer_output_is_within_an_adc_step_of_float64():
    """The whole float32 layer output (code units, summed over row tiles and phases, scaled to
    weight units) stays within one ADC step per row tile and phase of the float64 output."""
    torch.manual_seed(8)
    x = torch.randn(50, 3, 12, 12)
    pm = patch_model(_net(), _config(), x)
    for layer, xin in zip(_layers(pm), _layer_inputs(pm, x)):
        cal = layer.calibration
        with torch.no_grad():
            got = layer._read(xin, cal).double()
            want = layer._read(xin.double(), cal)
        step = (cal.adc_range_a.double() / adc_steps(layer.config.adc_bits)
                * layer.array.weight_units_per_a(cal.x_fs)).sum(0)           # (C_out,)
        phases = len(layer._dac_codes(xin[:1], cal))
        bound = phases * step.view((-1,) + (1,) * (got.dim() - 2))
        assert bool(((got - want).abs() <= bound + 1e-6).all())
        assert float((got - want).abs().max()) < float(want.abs().max())


def test_dac_codes_are_the_dac_voltages_in_steps():
    """``DAC.codes`` · ``volts_per_code`` gives the DAC's voltages (float64: no input sits
    within an ulp of a boundary), integer codes in range, the x⁻ phase by ``negate``."""
    torch.manual_seed(9)
    x = torch.randn(5000, dtype=torch.float64) * 3
    for bits in (None, 1, 4, 8):
        dac = DAC(0.2, bits)
        for signed in (True, False):
            c = dac.codes(x, 2.5, signed)
            steps = dac.steps(signed)
            assert float(c.abs().max()) <= steps and (signed or float(c.min()) >= 0)
            if bits is not None:
                assert torch.equal(c, c.round())
            assert torch.allclose(c * dac.volts_per_code(signed), dac(x, 2.5, signed),
                                  rtol=0, atol=1e-15)
        neg = dac.codes(x, 2.5, False, negate=True)
        assert torch.allclose(neg * dac.volts_per_code(False), dac(-x, 2.5, False), rtol=0,
                              atol=1e-15)


def test_column_never_driven_in_calibration_stays_finite():
    """A row tile whose inputs were all 0 V in calibration (the smallest positive ADC range):
    its read matrices in code units are bounded, so a later non-zero input gives finite
    outputs, equal to the read in amperes to 1e-9 (float64)."""
    torch.manual_seed(10)
    lin = nn.Linear(32, 3).double()
    cal_x = torch.rand(20, 32, dtype=torch.float64)
    cal_x[:, 16:] = 0.0                                    # the second row tile never driven
    pm = patch_model(nn.Sequential(lin), _config(), cal_x)
    layer = pm[0]
    assert 0 < float(layer.calibration.adc_range_a[1].max()) < 1e-30
    x = torch.rand(10, 32, dtype=torch.float64)
    with torch.no_grad():
        got = layer._read(x, layer.calibration)
        want = layer._read_unscaled(x, layer.calibration) * layer.array.weight_units_per_a(
            layer.calibration.x_fs)
    assert bool(torch.isfinite(got).all())
    assert float((got - want).abs().max() / want.abs().max()) <= 1e-9


def test_output_column_without_current_reads_zero():
    """A zero weight column in the ``ideal`` mode draws no current in calibration (the
    smallest positive float32 range, also after the ranges' cast to float32): its output is
    exactly the bias, not 0/0, in code units and in amperes."""
    torch.manual_seed(11)
    lin = nn.Linear(20, 3)
    with torch.no_grad():
        lin.weight[1] = 0.0
    pm = patch_model(nn.Sequential(lin), _config(mode="ideal"), torch.rand(16, 20))
    assert 0 < float(pm[0].calibration.adc_range_a[:, 1].max()) < 1e-30
    with torch.no_grad():
        y = pm(torch.rand(8, 20))
    assert bool(torch.isfinite(y).all())
    assert torch.equal(y[:, 1], lin.bias[1].expand(8))
    with torch.no_grad():
        amps = pm[0]._read_unscaled(torch.rand(8, 20), pm[0].calibration)
    assert bool(torch.isfinite(amps).all()) and not bool(amps[:, 1].any())


def test_layers_programmed_by_workers_equal_one_by_one(monkeypatch):
    """Programming the layers by two single-threaded workers (largest first) gives every layer
    its index and bitwise the read matrices and outputs of programming them in turn."""
    from spicecross.nn import analog_base

    torch.manual_seed(12)
    x = torch.randn(16, 3, 12, 12)
    cfg = _config(r_wire_ohm=0.3, tile_rows=16, tile_cols=8, sigma_r_on_ohm=500.0)
    outs = []
    for workers in (1, 2):
        monkeypatch.setattr(analog_base, "torch_threads", lambda w=workers: w)
        pm = patch_model(_net(), cfg, x)
        with torch.no_grad():
            outs.append((pm(x), [(m.layer_index, m.array.readout64) for m in _layers(pm)]))
    assert [i for i, _ in outs[0][1]] == [0, 1, 2] == [i for i, _ in outs[1][1]]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(outs[0][1], outs[1][1]))
    assert torch.equal(outs[0][0], outs[1][0])
