"""Many reads of one programmed tile as one netlist (the SPICE loop's decks): one analysis
whose point k is input vector k's operating point, for ngspice (a ``.dc`` sweep of an index
source) and VACASK (an ``op`` swept over an index parameter), built from the single-read
emitters of :mod:`.netlist` on the tile's element list without its input sources.
"""
from __future__ import annotations

import numpy as np

from .netlist import (_fmt, _options, ngspice_netlist_from_elements,
                      vacask_netlist_from_elements)
from .tile import Element, TileSpec, sense_name, tile_elements

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


__all__ = ["READS_OPTIONS", "VACASK_WARM_READS_OPTIONS", "READS_INDEX", "ngspice_reads_netlist",
           "vacask_reads_netlist", "own_gate_sources", "reads_continue_previous", "is_linear",
           "LINEAR_KINDS"]
