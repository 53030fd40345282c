"""VTEAM in three forms — numpy reference, ngspice behavioural subcircuit, Verilog-A in VACASK —
giving the same pinched hysteresis loops, the same untouched state under a sub-threshold read,
and one-line errors for bad parameters."""
import argparse
import json
import re
from pathlib import Path

import numpy as np
import pytest

from spicecross.cli import devices as device_cli
from spicecross.cli import main
from spicecross.devices.iv import rms_difference_pct
from spicecross.devices.behavioural import ngspice_transient_deck, run_ngspice_transient, vteam_subckt
from spicecross.devices.verilog_a import (compile_vteam_osdi, run_vacask_transient, va_source_path,
                                          vacask_transient_netlist)
from spicecross.devices.vteam import (PARAMETER_SETS, VTEAMParams, conductance_s,
                                      get_parameter_set, resistance_ohm,
                                      state_derivative_m_per_s, state_for_conductance, window)
from spicecross.devices.vteam_reference import (SineDrive, _clipped_cumsum,
                                                full_switching_frequency_hz, simulate,
                                                simulate_sine)

REPO = Path(__file__).resolve().parents[1]
FORMS = {"ngspice": run_ngspice_transient, "vacask": run_vacask_transient}


pytestmark = pytest.mark.usefixtures("module_osdi_cache")


def rms_pct(t_ref, i_ref, t, i):
    return rms_difference_pct(t_ref, i_ref, t, i)


# -- parameter sets and validation ------------------------------------------------------------
def test_parameter_sets_are_the_documented_ones():
    mt = get_parameter_set("memtorch_default")
    assert (mt.r_off_ohm, mt.r_on_ohm, mt.d_m, mt.k_on_m_per_s, mt.k_off_m_per_s) == \
        (1000, 50, 3e-9, -10, 5e-4)
    assert (mt.alpha_on, mt.alpha_off, mt.v_on_v, mt.v_off_v, mt.x_on_m, mt.x_off_m, mt.dt_s) == \
        (3, 1, -0.2, 0.02, 0, 3e-9, 1e-10)
    pt = get_parameter_set("pt_hf_ti")
    assert (pt.r_off_ohm, pt.r_on_ohm, pt.d_m, pt.k_on_m_per_s, pt.k_off_m_per_s) == \
        (2.5e3, 100, 10e-9, -80, 4.03e-8)
    assert (pt.alpha_on, pt.alpha_off, pt.v_on_v, pt.v_off_v, pt.x_on_m, pt.x_off_m, pt.dt_s) == \
        (3, 1, -0.53, 0.5, 0, 10e-9, 1e-6)
    for name, p in PARAMETER_SETS.items():
        assert "MemTorch" in p.source and p.r_model == "linear", name
    with pytest.raises(ValueError, match="unknown VTEAM parameter set 'nope'.*pt_hf_ti"):
        get_parameter_set("nope")


@pytest.mark.parametrize("field,value", [
    ("r_on_ohm", -1.0), ("r_off_ohm", 10.0), ("k_on_m_per_s", 80.0), ("k_off_m_per_s", -1e-8),
    ("v_on_v", 0.53), ("v_off_v", 0.0), ("alpha_on", 0.0), ("x_off_m", -1e-9),
    ("r_model", "cubic"), ("dt_s", 0.0), ("d_m", float("nan")), ("alpha_off", "1"),
    ("window", "hann"), ("window_p", 0.0),
])
def test_bad_parameters_raise_one_line_errors(field, value):
    with pytest.raises(ValueError) as exc:
        get_parameter_set("pt_hf_ti").replace(**{field: value})
    msg = str(exc.value)
    assert "\n" not in msg and f"VTEAMParams.{field}" in msg and repr(value)[:4] in msg


def test_bad_run_inputs_raise():
    p = get_parameter_set("pt_hf_ti")
    with pytest.raises(ValueError, match="frequency_hz"):
        SineDrive(1.0, 0.0)
    with pytest.raises(ValueError, match="x0_m"):
        ngspice_transient_deck(p, 1.0, SineDrive(1.0, 1.0), 2e-8)
    with pytest.raises(ValueError, match="t_stop_s"):
        vacask_transient_netlist(p, -1.0, SineDrive(1.0, 1.0), 0.0)
    with pytest.raises(ValueError, match="x0_m"):
        simulate(p, [0.0, 1.0], [0.0, 1.0], -1e-9)
    with pytest.raises(ValueError, match="increasing"):
        simulate(p, [0.0, 0.0], [0.0, 1.0], 0.0)


# -- model equations ----------------------------------------------------------------------------
def test_sign_convention_matches_memtorch():
    """MemTorch's VTEAM.dxdt: k_off (v/v_off - 1)^a_off for v >= v_off, k_on (v/v_on - 1)^a_on
    for v <= v_on, with k_on < 0 and R growing with x: a negative write below v_on sets the
    device ON (x -> x_on, r_on), a positive write above v_off resets it OFF."""
    p = get_parameter_set("pt_hf_ti")
    assert state_derivative_m_per_s(p, -1.0) < 0 < state_derivative_m_per_s(p, 1.0)
    assert state_derivative_m_per_s(p, -1.0) == pytest.approx(-80 * (1 / 0.53 - 1) ** 3)
    assert state_derivative_m_per_s(p, 1.0) == pytest.approx(4.03e-8 * (1 / 0.5 - 1))
    assert np.all(state_derivative_m_per_s(p, np.linspace(-0.53, 0.5, 101)) == 0)
    assert resistance_ohm(p, p.x_on_m) == pytest.approx(p.r_on_ohm)
    assert resistance_ohm(p, p.x_off_m) == pytest.approx(p.r_off_ohm)
    t = np.linspace(0, 1e-6, 11)
    _, x = simulate(p, t, np.full(t.size, -1.0), p.x_off_m)
    assert x[-1] == p.x_on_m             # ~0.2 ns to switch ON at -1 V: fully ON after 1 µs


@pytest.mark.parametrize("r_model", ["linear", "exponential"])
def test_conductance_state_round_trip(r_model):
    p = get_parameter_set("pt_hf_ti").replace(r_model=r_model)
    x = np.linspace(p.x_on_m, p.x_off_m, 7)
    assert np.allclose(state_for_conductance(p, conductance_s(p, x)), x, rtol=0, atol=1e-20)
    assert state_for_conductance(p, 1.0) == p.x_on_m          # clipped to 1/r_on
    if r_model == "exponential":
        w = 0.5
        assert resistance_ohm(p, w * p.x_off_m) == pytest.approx(100 * 25 ** 0.5)
    with pytest.raises(ValueError, match="> 0"):
        state_for_conductance(p, 0.0)


def test_reference_integrator_is_clipped_forward_euler():
    rng = np.random.default_rng(3)
    for _ in range(30):
        steps = rng.normal(0, 0.05, rng.integers(1, 2000)) * (rng.random() < 0.5 or 1)
        x0 = rng.uniform(0, 1)
        x, ref = x0, []
        for s in steps:
            x = min(max(x + s, 0.0), 1.0)
            ref.append(x)
        assert np.allclose(_clipped_cumsum(x0, steps, 0.0, 1.0), ref, rtol=0, atol=1e-12)
    p = get_parameter_set("memtorch_default")
    d = SineDrive(1.0, 1e6)
    t = np.linspace(0, 2e-6, 2001)
    i, x = simulate(p, t, d(t), p.x_on_m, max_step_s=np.inf)
    xs, loop = p.x_on_m, [p.x_on_m]
    for k in range(t.size - 1):
        xs = min(max(xs + float(state_derivative_m_per_s(p, d(t[k]))) * (t[k + 1] - t[k]),
                     p.x_on_m), p.x_off_m)
        loop.append(xs)
    assert np.allclose(x, loop, rtol=0, atol=1e-21)
    assert np.allclose(i, d(t) / resistance_ohm(p, x))
    # vectorised over devices: same as one at a time
    x0 = np.array([p.x_on_m, 0.5 * p.x_off_m, p.x_off_m])
    iv, xv = simulate(p, t, d(t), x0)
    for j in range(3):
        assert np.allclose(simulate(p, t, d(t), x0[j])[1], xv[:, j])


# -- the three forms agree --------------------------------------------------------------------
# pt_hf_ti: switching OFF takes ~0.5 s at 1 V (k_off 4.03e-8 m/s over 10 nm), switching ON
# nanoseconds, so a fully switching loop needs a slow drive (MemTorch's own case-study plot:
# 1 V, 0.5 Hz, from x_on). memtorch_default is the same picture ~4e6 times faster.
CASES = {"pt_hf_ti": SineDrive(1.0, 0.5), "memtorch_default": SineDrive(1.0, 1e6)}


@pytest.mark.parametrize("name", list(CASES))
def test_three_forms_give_the_same_pinched_hysteresis_loop(name):
    p, d = get_parameter_set(name), CASES[name]
    T = d.period_s
    t_stop = 2 * T
    results = {"reference": simulate_sine(p, d, t_stop, p.x_on_m, n_points=16001)}
    for form, run in FORMS.items():
        results[form] = run(p, t_stop, d, p.x_on_m)
    t_ref, _, i_ref, _ = results["reference"]
    peak = np.max(np.abs(i_ref))
    tau_pos = np.arcsin(0.5) / (2 * np.pi) * T                          # v = +A/2
    tau_neg = np.arcsin(-0.5 * p.v_on_v / d.amplitude_v) / (2 * np.pi) * T   # v = v_on/2
    for form, (t, v, i, x) in results.items():
        assert np.allclose(v, d(t), atol=1e-6 * d.amplitude_v), form
        # pinched: the current vanishes where the voltage does
        zeros = np.arange(5) * T / 2
        assert np.all(np.abs(np.interp(zeros, t, i)) < 1e-3 * peak), form
        # hysteresis: different currents at the same voltage on the up and down sweeps, in
        # both lobes (OFF switching during the positive one, ON switching in the negative one)
        up, down = np.interp([tau_pos, T / 2 - tau_pos], t, i)
        assert abs(up - down) > 0.5 * max(abs(up), abs(down)), (form, up, down)
        down_n, up_n = np.interp([T / 2 + tau_neg, T - tau_neg], t, i)
        assert abs(up_n - down_n) > 0.5 * max(abs(up_n), abs(down_n)), (form, up_n, down_n)
        # the state crosses its whole range
        assert (x.max() - x.min()) > 0.99 * p.x_span_m, form
        assert x.min() > p.x_on_m - 1e-3 * p.x_span_m and x.max() < p.x_off_m + 1e-3 * p.x_span_m
    for form in FORMS:
        t, _, i, _ = results[form]
        err = rms_pct(t_ref, i_ref, t, i)
        assert err < 1.0, f"{form} vs reference: {err:.3f} % of peak"


@pytest.mark.parametrize("name,amplitude", [("pt_hf_ti", 0.1), ("memtorch_default", 0.01)])
def test_read_below_threshold_leaves_the_state(name, amplitude):
    """A read below both thresholds moves nothing (note memtorch_default's v_off is 20 mV: a
    0.1 V read would reset it)."""
    p, d = get_parameter_set(name), SineDrive(amplitude, 1e3)
    x0 = p.x_on_m + 0.37 * p.x_span_m
    runs = {"reference": simulate_sine(p, d, 2e-3, x0, n_points=2001)}
    runs.update({form: run(p, 2e-3, d, x0) for form, run in FORMS.items()})
    for form, (t, v, i, x) in runs.items():
        assert np.max(np.abs(x - x0)) < 1e-9 * p.x_span_m, form
        assert np.allclose(i, v / resistance_ohm(p, x0), rtol=1e-6, atol=1e-9 * amplitude /
                           p.r_on_ohm), form


def test_exponential_resistance_in_all_forms():
    p = get_parameter_set("memtorch_default").replace(r_model="exponential")
    d = CASES["memtorch_default"]
    t_ref, _, i_ref, _ = simulate_sine(p, d, d.period_s, p.x_on_m, n_points=8001)
    for form, run in FORMS.items():
        t, _, i, _ = run(p, d.period_s, d, p.x_on_m)
        assert rms_pct(t_ref, i_ref, t, i) < 1.0, form


# -- window functions (VTEAM paper, Sec. II) -------------------------------------------------
def test_window_functions_have_their_published_shapes():
    p = get_parameter_set("memtorch_default")
    w = np.linspace(0, 1, 11)
    assert np.all(window(p, w, 1.0) == 1.0)
    jog = p.replace(window="joglekar", window_p=2.0)
    assert np.allclose(window(jog, w, 1.0), 1 - (2 * w - 1) ** 4)
    assert window(jog, 0.0, 1.0) == window(jog, 1.0, -1.0) == 0.0 and window(jog, 0.5, 1) == 1.0
    bio = p.replace(window="biolek", window_p=1.0)
    assert np.allclose(window(bio, w, 1.0), 1 - w ** 2)           # x grows: stops at w = 1
    assert np.allclose(window(bio, w, -1.0), 1 - (1 - w) ** 2)    # x shrinks: stops at w = 0
    pro = p.replace(window="prodromakis", window_p=3.0)
    assert np.allclose(window(pro, w, 1.0), 1 - ((w - 0.5) ** 2 + 0.75) ** 3)
    assert window(pro, 0.0, 1.0) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("win,p_exp", [("none", 1.0), ("joglekar", 1.0), ("joglekar", 3.0),
                                       ("biolek", 1.0), ("prodromakis", 2.0)])
def test_three_forms_agree_with_each_window(win, p_exp):
    """memtorch_default at 0.25 V, 1 MHz from w = 0.3: both directions move at rates every form
    resolves (ON ~20 ns, OFF ~0.5 µs per range), so the window shapes the loop."""
    p = get_parameter_set("memtorch_default").replace(window=win, window_p=p_exp)
    d, x0 = SineDrive(0.25, 1e6), 0.3 * 3e-9
    t_ref, _, i_ref, x_ref = simulate_sine(p, d, 2 * d.period_s, x0, n_points=8001)
    if win != "none":   # the window changes the loop
        _, _, i_none, _ = simulate_sine(p.replace(window="none"), d, 2 * d.period_s, x0,
                                        n_points=8001)
        assert rms_pct(t_ref, i_none, t_ref, i_ref) > 2.0
    for form, run in FORMS.items():
        t, _, i, x = run(p, 2 * d.period_s, d, x0)
        assert rms_pct(t_ref, i_ref, t, i) < 0.5, form
        assert np.max(np.abs(np.interp(t_ref, t, x) - x_ref)) < 0.01 * p.x_span_m, form


# -- the Verilog-A source and its compiled module --------------------------------------------
def test_verilog_a_source_is_found_and_names_match_the_dataclass():
    src = va_source_path()
    # one real file, package data; the top-level verilog_a/vteam.va is only a symlink to it
    package_file = REPO / "spicecross" / "devices" / "vteam.va"
    assert src.resolve() == package_file and src.is_file() and not src.is_symlink()
    assert (REPO / "verilog_a" / "vteam.va").resolve() == package_file.resolve()
    names = set(re.findall(r"parameter\s+(?:real|string|integer)\s+(\w+)", src.read_text()))
    fields = {f for f in VTEAMParams.__dataclass_fields__ if f not in ("dt_s", "source")}
    assert fields <= names
    osdi = compile_vteam_osdi()
    assert osdi.is_file() and compile_vteam_osdi() == osdi
    import hashlib
    assert hashlib.sha256(src.read_bytes()).hexdigest() == osdi.parent.name


def test_behavioural_subckt_text_is_readable():
    text = vteam_subckt(get_parameter_set("pt_hf_ti"), name="mem1")
    assert text.splitlines()[3].startswith(".subckt mem1 p n params: w0=0")
    assert ".param kon=-80.0" in text and text.rstrip().endswith(".ends mem1")
    with pytest.raises(ValueError):
        vteam_subckt(get_parameter_set("pt_hf_ti"), name="bad name")


def test_full_switching_frequency():
    p = get_parameter_set("pt_hf_ti")
    f = full_switching_frequency_hz(p, 1.0)
    assert 0.4 < f < 0.8
    _, _, _, x = simulate_sine(p, SineDrive(1.0, f), 1 / f, p.x_on_m, n_points=4001)
    assert x.max() == p.x_off_m and x[-1] == p.x_on_m
    with pytest.raises(ValueError, match="below both switching thresholds"):
        full_switching_frequency_hz(p, 0.1)


# -- CLI --------------------------------------------------------------------------------------
def _parser():
    parser = argparse.ArgumentParser(prog="spicecross")
    device_cli.register(parser.add_subparsers(dest="command"))
    return parser


def test_cli_device_iv_writes_png_and_summary(tmp_path, capsys):
    out = tmp_path / "iv.png"
    args = _parser().parse_args(["device", "iv", "--set", "pt_hf_ti", "--amplitude", "1.0",
                                 "--frequency", "1e3", "--cycles", "1", "--points-per-cycle",
                                 "2000", "--forms", "reference,ngspice,vacask", "--out", str(out)])
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out.strip())
    assert set(summary["rms_diff_pct_of_peak"]) == {"ngspice", "vacask"}
    assert all(v < 1.0 for v in summary["rms_diff_pct_of_peak"].values())
    assert summary["state_range_visited"] > 0.99       # starts OFF, switches ON at -0.53 V
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv,match", [
    (["--forms", "reference,spectre"], "spectre"),
    (["--x0", "1e-6"], "outside"),
    (["--amplitude", "0.1"], "below both switching thresholds"),
    (["--frequency", "-5"], "--frequency"),
])
def test_cli_bad_input_is_one_line(argv, match, tmp_path, capsys):
    assert main(["device", "iv", "--out", str(tmp_path / "x.png")] + argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err
