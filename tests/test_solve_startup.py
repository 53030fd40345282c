"""``spicecross solve``'s fast start: one parser module per command, no numpy on the plain
solve path, and the whole-text shortcuts (netlist hash, trust check, raw-file header, VACASK
analysis names) equal to their line-by-line definitions."""
from __future__ import annotations

import hashlib
import json
import random
import re
import subprocess
import sys
from array import array

import numpy as np
import pytest

from spicecross.cli import COMMAND_MODULES, COMMANDS, build_parser
from spicecross.spice import untrusted
from spicecross.spice.rawfile import _VARIABLE, _variable_names, read_raw
from spicecross.spice.simulators import NGSPICE, VACASK, SimulationError
from spicecross.spice.solve_netlist import netlist_hash

# Lines that exercise every keyword, comment marker and blank of the checks, joined below
# with every kind of line break str.splitlines knows.
LINES = ['.control', 'shell ls', 'load "/etc/x.osdi"', 'load "spice/resistor.osdi"',
         '  postprocess(x)', 'include "a"', ' .include x', 'r1 (a b) r r=1', '// shell',
         '* .control', '', ' \t', 'exec x', '.LIB x', 'embed', 'system', '  Shell y', 'loadx',
         '.controlx', 'load', 'load ../x', ' *c', ' a*b', 'x // y', '\t//z', 'SHELL',
         'ſhell', '  LOAD /x', 'r2 a b 2*3', 'analysis op1 op', '  analysis', 'x analysis y']
BREAKS = ['\n', '\r\n', '\r', '\x0b', '\x0c', '\x1c', '\x85', '\u2028']


def random_texts(n: int, seed: int):
    rng = random.Random(seed)
    for _ in range(n):
        sep = '\n' if rng.random() < 0.6 else rng.choice(BREAKS)
        text = sep.join(rng.choice(LINES) for _ in range(rng.randint(0, 9)))
        yield text + sep * rng.randint(0, 2)


def hash_by_lines(text: str) -> str:
    """The netlist hash's definition: comment lines dropped from text.splitlines()."""
    body = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith(("*", "//")))
    return hashlib.sha256(body.encode()).hexdigest()


def test_netlist_hash_equals_its_line_by_line_definition(tile_netlists):
    texts = list(random_texts(20000, seed=1)) + tile_netlists
    assert sum(untrusted.plain_lines(t) for t in texts) > 10000      # both paths are taken
    assert sum(not untrusted.plain_lines(t) for t in texts) > 3000
    for text in texts:
        assert netlist_hash(text) == hash_by_lines(text), repr(text)


def test_trust_check_equals_the_line_by_line_check(tile_netlists):
    found = 0
    for text in list(random_texts(20000, seed=2)) + tile_netlists:
        for sim in ("ngspice", "vacask"):
            fast = untrusted.unsafe_line(text, sim)
            assert fast == untrusted._unsafe_line_by_line(text, sim), (repr(text), sim)
            found += fast is not None
    assert found > 10000                # the checks do find unsafe lines


def test_vacask_analysis_names_equal_a_regex_over_the_text():
    pattern = re.compile(r"^\s*analysis\s+(\S+)", re.M)
    names = 0
    for text in random_texts(20000, seed=3):
        assert VACASK.analyses(text) == tuple(pattern.findall(text)), repr(text)
        names += len(VACASK.analyses(text))
    assert names > 1000


def write_raw(path, names, table, complex_values=False, extra_field=False):
    """A binary Berkeley raw file of one plot (``table``: points × variables)."""
    head = [f"Title: t", "Date: now", "Plotname: Test plot",
            f"Flags: {'complex' if complex_values else 'real'}",
            f"No. Variables: {len(names)}", f"No. Points: {len(table)}", "Variables:"]
    head += [f"\t{k}\t{n}\tvoltage" + ("\tgrid=3" if extra_field and k == 0 else "")
             for k, n in enumerate(names)]
    dtype = np.complex128 if complex_values else np.float64
    path.write_bytes(("\n".join(head) + "\nBinary:\n").encode()
                     + np.asarray(table, dtype=dtype).tobytes())


@pytest.mark.parametrize("extra_field", [False, True])
def test_raw_reader_real_and_complex(tmp_path, extra_field):
    rng = np.random.default_rng(0)
    names = ["V(A)", "bl_0_1", "vsense3:flow(br)", "x.y"]
    table = rng.normal(size=(5, 4))
    write_raw(tmp_path / "r.raw", names, table, extra_field=extra_field)
    (plot,) = read_raw(tmp_path / "r.raw")
    assert plot.names == [n.lower() for n in names] and plot.npts == 5
    assert isinstance(plot._values, array)
    for k in range(5):
        assert list(plot.point(k).values()) == table[k].tolist()
    assert np.array_equal(plot["v(a)"], table[:, 0]) and "V(a)" in plot and "w" not in plot
    ctable = table + 1j * rng.normal(size=table.shape)
    write_raw(tmp_path / "c.raw", names, ctable, complex_values=True)
    (cplot,) = read_raw(tmp_path / "c.raw")
    assert np.array_equal(cplot["x.y"], ctable[:, 3])
    with pytest.raises(ValueError, match="complex"):
        cplot.point(0)
    data = (tmp_path / "r.raw").read_bytes()
    (tmp_path / "cut.raw").write_bytes(data[:-9])
    with pytest.raises(ValueError, match="truncated"):
        read_raw(tmp_path / "cut.raw")


def test_variable_names_split_equals_the_regex():
    block = b"".join(b"\t%d\tn_%d\tnotype\n" % (k, k) for k in range(50))
    assert _variable_names(block, 50) == [m.decode() for m in _VARIABLE.findall(block)]
    odd = block.replace(b"\tn_7\tnotype", b"\tn_7\tnotype\tdims=2")
    assert _variable_names(odd, 50) == [f"n_{k}" for k in range(50)]


def test_each_command_is_registered_by_the_module_the_table_names():
    import importlib

    from spicecross.cli.args import ArgumentParser

    registered = {}
    for module in COMMAND_MODULES:      # which commands each module adds on its own
        p = ArgumentParser(prog="x")
        sub = p.add_subparsers(dest="command")
        importlib.import_module(f"spicecross.cli.{module}").register(sub)
        registered.update({cmd: module for cmd in sub.choices})
    assert registered == COMMANDS
    for command, module in COMMANDS.items():
        sub = next(a for a in build_parser(command)._actions if a.dest == "command")
        assert set(sub.choices) == {c for c, m in COMMANDS.items() if m == module}


def test_plain_solve_imports_no_numpy(tmp_path):
    """``spicecross solve --no-cache --json`` of a VACASK tile: the currents, and numpy never
    imported (its import is a third of the CLI's own start-up)."""
    deck = tmp_path / "t.sim"
    subprocess.run([sys.executable, "-m", "spicecross.cli", "netlist", "--rows", "4", "--cols",
                    "3", "--simulator", "vacask", "--seed", "2", "--out", str(deck)], check=True,
                   capture_output=True)
    code = ("import sys; from spicecross.cli import main; "
            f"rc = main(['solve', '--no-cache', '--jobs', '1', '--json', {str(deck)!r}]); "
            "print('numpy' in sys.modules, 'torch' in sys.modules, rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    payload, flags = out.stdout.strip().splitlines()
    assert flags == "False False 0"
    currents = json.loads(payload)["sense_currents"]
    assert len(currents) == 3 and all(c > 0 for c in currents)


@pytest.fixture(scope="module")
def tile_netlists() -> list[str]:
    """Emitted netlists (ngspice and VACASK, 0T1R and 1T1R, a reads deck)."""
    from spicecross.circuit.netlist import ngspice_netlist, vacask_netlist
    from spicecross.circuit.reads_netlist import vacask_reads_netlist
    from spicecross.circuit.tile import TileSpec

    rng = np.random.default_rng(1)
    out = []
    for cell in ("0t1r", "1t1r"):
        spec = TileSpec(rows=4, cols=3, cell=cell)
        g = rng.uniform(1e-5, 1e-4, (4, 3))
        v = rng.uniform(0, 0.2, 4)
        out += [ngspice_netlist(spec, g, v), vacask_netlist(spec, g, v),
                vacask_reads_netlist(spec, g, np.vstack([v, v / 2]))]
    return out


@pytest.mark.parametrize("extra_field", [False, True])
def test_variables_found_in_the_raw_bytes_equal_the_parsed_names(tmp_path, extra_field):
    """RawPlot.variables_with before the names are parsed (bytes search) equals filtering the
    parsed names; sense currents read that way equal parse()'s."""
    rng = random.Random(4)
    words = ["vsense", "VSENSE", "vsense0:flow(br)", "Vsense12:flow(br)", "i(vsense3)", "bl_0_1",
             "xvsensex", "vsenseµ", "wl_3_4", "vsense7:flow(br)", "vin0:flow(br)"]
    for trial in range(40):
        names = [rng.choice(words) + rng.choice(["", "_a", "1"]) for _ in range(rng.randint(1, 12))]
        path = tmp_path / f"r{trial}.raw"
        write_raw(path, names, np.arange(len(names), dtype=float)[None] + 0.5,
                  extra_field=extra_field)
        (lazy,) = read_raw(path)
        (eager,) = read_raw(path)
        eager.names     # parsed first
        for needle in ("vsense", "flow", "µ"):      # µ (not ASCII): found in the parsed names
            assert lazy.variables_with(needle) == eager.variables_with(needle) == [
                (i, n) for i, n in enumerate(eager.names) if needle in n]
            assert ("names" in lazy.__dict__) == (needle == "µ")
        for sim in (VACASK, NGSPICE):
            (lazy,) = read_raw(path)
            try:
                expected = sim.parse(eager)[0]
            except SimulationError:
                with pytest.raises(SimulationError, match="no sense source"):
                    sim.sense_currents(lazy)
                continue
            assert sim.sense_currents(lazy) == pytest.approx(expected, nan_ok=True)


def test_an_unreadable_variable_line_is_a_simulation_error(tmp_path):
    write_raw(tmp_path / "r.raw", ["a", "vsense0:flow(br)"], [[1.0, 2.0]])
    data = (tmp_path / "r.raw").read_bytes().replace(b"\t1\tvsense0", b"\tx\tvsense0")
    (tmp_path / "bad.raw").write_bytes(data)
    (plot,) = read_raw(tmp_path / "bad.raw")
    with pytest.raises(SimulationError, match="unreadable raw file"):
        VACASK.sense_currents(plot)
    with pytest.raises(SimulationError, match="unreadable raw file"):
        VACASK.node_voltages(plot)


def test_solve_result_reads_node_voltages_when_first_used_and_pickles_them(tmp_path):
    import pickle

    from spicecross.circuit.netlist import vacask_netlist
    from spicecross.circuit.tile import TileSpec
    from spicecross.spice.solve_netlist import SolveResult, solve_text

    spec, rng = TileSpec(rows=3, cols=2), np.random.default_rng(3)
    text = vacask_netlist(spec, rng.uniform(1e-5, 1e-4, (3, 2)), rng.uniform(0, 0.2, 3))
    calls = []
    res = solve_text(text, "vacask", None, "t", while_running=lambda: calls.append(1))
    assert res.ok and calls == [1] and callable(res._nodes)        # not read yet
    cur, nodes = VACASK.read_tile(text)
    assert res.sense_currents == cur.tolist()
    assert res.node_voltages_v == nodes and not callable(res._nodes)
    unread = solve_text(text, "vacask")
    sent = pickle.dumps(unread)      # as a worker returns it: the plot, its names not parsed
    assert callable(unread._nodes) and "names" not in unread._nodes.args[0].__dict__
    again = pickle.loads(sent)
    assert callable(again._nodes)                                   # read where asked for
    assert again == SolveResult(again.sense_currents, nodes, True, "", "vacask",
                                again.simulator_version, again.netlist_hash, again.seconds)
    assert pickle.loads(pickle.dumps(again)) == again                   # read, then pickled
    assert pickle.loads(pickle.dumps(VACASK)) is VACASK


def test_while_running_overlaps_the_run_and_its_error_kills_it(tmp_path):
    from spicecross.circuit.netlist import vacask_netlist
    from spicecross.circuit.tile import TileSpec

    text = vacask_netlist(TileSpec(rows=2, cols=2), np.full((2, 2), 1e-4), np.full(2, 0.1))
    seen = []

    def look():     # the run directory exists and holds the deck while the simulator runs
        (run,) = tmp_path.iterdir()
        seen.append(sorted(p.name for p in run.iterdir()))
    plots = VACASK.run(text, workdir=tmp_path, while_running=look)
    assert seen and "deck.sim" in seen[0] and len(plots) == 1
    assert list(tmp_path.iterdir()) == []                     # removed after the run

    def fail():
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        VACASK.run(text, workdir=tmp_path, while_running=fail)
    assert list(tmp_path.iterdir()) == []


def test_nothing_but_the_start_is_imported_before_the_simulator_starts(tmp_path):
    """At the simulator's start ``spicecross solve`` has not imported the modules whose work
    overlaps the run (hashlib, json) nor the heavy ones it does not need (typing, dataclasses,
    tempfile, shutil, numpy); the console-script path freezes the GC before it exits."""
    deck = tmp_path / "t.sim"
    subprocess.run([sys.executable, "-m", "spicecross.cli", "netlist", "--rows", "3", "--cols",
                    "2", "--simulator", "vacask", "--seed", "2", "--out", str(deck)], check=True,
                   capture_output=True)
    code = ("import gc, subprocess, sys\n"
            "seen = []\n"
            "init = subprocess.Popen.__init__\n"
            "def spy(self, *a, **k):\n"
            "    seen.append(set(sys.modules)); init(self, *a, **k)\n"
            "subprocess.Popen.__init__ = spy\n"
            "from spicecross.cli import main\n"
            f"sys.argv = ['spicecross', 'solve', '--no-cache', '--json', {str(deck)!r}]\n"
            "rc = main()\n"
            "heavy = ('hashlib', 'json', 'typing', 'dataclasses', 'tempfile', 'shutil', 'numpy')\n"
            "print(sorted(m for m in heavy if m in seen[0]), rc, gc.get_freeze_count() > 0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()
    assert out[-1] == "[] 0 True"
    assert len(json.loads(out[0])["sense_currents"]) == 2


def test_help_width_is_the_terminal_width_shutil_finds(monkeypatch):
    import shutil

    from spicecross.cli.args import ArgumentParser

    for columns in ("57", None, "junk"):
        if columns is None:
            monkeypatch.delenv("COLUMNS", raising=False)
        else:
            monkeypatch.setenv("COLUMNS", columns)
        formatter = ArgumentParser(prog="x")._get_formatter()
        assert formatter._width == shutil.get_terminal_size().columns - 2
