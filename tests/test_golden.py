"""The golden-reference suite: kept netlists, stored ngspice results, surrogate bounds."""
import functools
import subprocess
import sys

import pytest

from spicecross import golden
from spicecross.circuit.tile import TileSpec


@pytest.mark.parametrize("case", golden.cases(), ids=lambda c: c.name)
def test_golden_case(case):
    res = golden.check_case(case)
    assert res.ok, "\n".join(res.messages)


def test_changed_wire_default_fails_readably(monkeypatch):
    monkeypatch.setattr(golden, "TileSpec", functools.partial(TileSpec, r_wire_wl_ohm=1.5))
    case = next(c for c in golden.cases() if c.name == "passive_16x16")
    res = golden.check_case(case, run_spice=False)
    assert not res.ok
    text = "\n".join(res.messages)
    assert "emitted netlist differs from passive_16x16.cir: 256 lines differ" in text
    assert "-Rwl0_1 wl_0_0 wl_0_1 0.1" in text and "+Rwl0_1 wl_0_0 wl_0_1 1.5" in text


def test_normalisation_ignores_comments_and_float_noise():
    a = "* comment\nR1 a b 0.30000000000000004\n.op\n"
    b = "R1 a b 0.3\n// other comment\n.op\n"
    assert golden.normalise_netlist(a) == golden.normalise_netlist(b)
    assert golden.normalise_netlist("R1 a b 0.31") != golden.normalise_netlist(b)


def test_cli_golden_check(tmp_path):
    r = subprocess.run([sys.executable, "-m", "spicecross.cli", "golden", "check", "--case", "passive_16x16"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "passive_16x16: ok" in r.stdout
    r = subprocess.run([sys.executable, "-m", "spicecross.cli", "golden", "check", "--case", "nope"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and "nope" in r.stderr
