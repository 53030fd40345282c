"""A reference nodal solver (scipy.sparse) for passive tile netlists, independent of SPICE and of
the surrogate: it reads the same element list the emitters write and solves Kirchhoff's current
law with every voltage source grounded on one side, as in the tile topology.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..circuit.tile import Element, TileSpec, sense_name, tile_elements


def solve_elements(elements: list[Element]) -> tuple[dict[str, float], dict[str, float]]:
    """Node voltages (V) and source currents (A, into the + terminal) of a resistor network
    whose voltage sources each have one terminal at ground ('0')."""
    fixed: dict[str, float] = {"0": 0.0}
    sources: dict[str, str] = {}
    for e in elements:
        if e.kind == "V":
            if e.nodes[1] != "0":
                raise ValueError(f"source {e.name} is not grounded")
            fixed[e.nodes[0]] = e.value
            sources[e.name] = e.nodes[0]
        elif e.kind != "R":
            raise ValueError(f"the nodal reference handles R and V only, got {e.kind} {e.name}")
    res = [e for e in elements if e.kind == "R"]
    free = sorted({n for e in res for n in e.nodes if n not in fixed})
    idx = {n: k for k, n in enumerate(free)}
    rows, cols, vals = [], [], []
    rhs = np.zeros(len(free))
    for e in res:
        g = 1.0 / e.value
        a, b = e.nodes
        for p, q in ((a, b), (b, a)):
            if p in idx:
                rows.append(idx[p]); cols.append(idx[p]); vals.append(g)
                if q in idx:
                    rows.append(idx[p]); cols.append(idx[q]); vals.append(-g)
                else:
                    rhs[idx[p]] += g * fixed[q]
    A = sp.csc_matrix((vals, (rows, cols)), shape=(len(free), len(free)))
    x = spla.spsolve(A, rhs) if len(free) else np.zeros(0)
    volts = dict(fixed)
    volts.update({n: float(x[k]) for n, k in idx.items()})
    currents = {name: 0.0 for name in sources}
    node_src = {n: s for s, n in sources.items()}
    for e in res:
        a, b = e.nodes
        i_ab = (volts[a] - volts[b]) / e.value
        if b in node_src:
            currents[node_src[b]] += i_ab   # flows into the source's + terminal
        if a in node_src:
            currents[node_src[a]] -= i_ab
    return volts, currents


def nodal_sense_currents(spec: TileSpec, g_s: np.ndarray, v_in_v: np.ndarray) -> np.ndarray:
    """Sense currents (A, shape (cols,)) of a passive (0T1R) tile read, by nodal analysis."""
    if spec.cell != "0t1r":
        raise ValueError("the nodal reference solves passive (0t1r) tiles only")
    _, cur = solve_elements(tile_elements(spec, g_s, v_in_v))
    return np.array([cur[sense_name(j)] for j in range(spec.cols)])
