"""Many reads of a linear tile by superposition: SPICE solves one read per row, the rest is a
matrix product.

A 0T1R tile (resistors and sources only, :func:`~spicecross.circuit.reads_netlist.is_linear`) has
sense currents linear in its input voltages: ``I(v) = v @ T`` with ``T`` (rows, cols) in S, row
``i`` the sense currents for 1 V on input ``i`` and 0 V elsewhere. So when a programmed array is
read with more distinct vectors than it has rows, the simulator solves the ``rows`` unit vectors
(one reads sweep per chunk, the same path and cache as any other reads) and the currents of every
vector follow from ``T``. The unit-vector netlist depends only on the programmed array, so it is
solved once per array and then served from the cache for every later batch of images.

Exact up to rounding: equal to one ``.op`` per vector to ≤ 1e-9 relative (tests/test_reads.py);
the simulators converge a linear network in one Newton step to ~1e-18 A. Nonlinear tiles
(1T1R selectors, memristors) and arrays read with at most ``rows`` vectors are solved as they
are.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..circuit.reads_netlist import is_linear
from ..circuit.tile import TileSpec, tile_elements

#: Amplitude of the unit input vectors (V); T is the result divided by it.
UNIT_V = 1.0


@dataclass(frozen=True)
class Superposed:
    """Job ``index`` of a batch was replaced by its unit vectors; ``v`` (n, rows) in V are the
    vectors whose currents are wanted."""

    index: int
    v: np.ndarray


def superposable(spec: TileSpec, g_s: np.ndarray, n_vectors: int) -> bool:
    """Whether ``n_vectors`` reads of this programmed tile are cheaper by superposition: the
    tile is linear and the reads outnumber its rows."""
    return n_vectors > spec.rows and is_linear(tile_elements(spec, g_s, np.zeros(spec.rows)))


def unit_vectors(spec: TileSpec) -> np.ndarray:
    """The (rows, rows) input batch in V: :data:`UNIT_V` on one row at a time."""
    return UNIT_V * np.eye(spec.rows)


def superpose_jobs(jobs: list[tuple[TileSpec, np.ndarray, np.ndarray]]
                   ) -> tuple[list[tuple[TileSpec, np.ndarray, np.ndarray]], list[Superposed]]:
    """``jobs`` [(spec, G in S, V batch (n, rows) in V), …] with every superposable job's
    vectors replaced by the unit vectors, and the plan to undo it (:func:`combine`)."""
    out, plan = [], []
    for k, (spec, g, v) in enumerate(jobs):
        v = np.atleast_2d(spec.check_inputs(v, "input batch"))
        if superposable(spec, g, len(v)):
            plan.append(Superposed(k, v))
            out.append((spec, g, unit_vectors(spec)))
        else:
            out.append((spec, g, v))
    return out, plan


def combine(plan: list[Superposed], results: list) -> list:
    """The :class:`~spicecross.spice.solve.ReadsResult` per original job: for superposed jobs
    the currents (n, cols) in A of the wanted vectors, ``v @ T`` (NaN rows if the unit reads
    failed)."""
    out = list(results)
    for p in plan:
        res = results[p.index]
        if res.ok:
            cur = p.v @ (res.currents_a / UNIT_V)
        else:
            cur = np.full((len(p.v), res.currents_a.shape[1]), np.nan)
        out[p.index] = replace(res, currents_a=cur, superposed=True,
                               error=res.error and f"unit-vector reads: {res.error}")
    return out


__all__ = ["UNIT_V", "Superposed", "combine", "superposable", "superpose_jobs", "unit_vectors"]
