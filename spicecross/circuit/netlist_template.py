"""Tile-read netlists filled into a memoized template (the VACASK emitter's fast path).

A read's netlist text differs from another read of a tile of the same spec and the same open
cells only in its input voltages and cell resistances. :func:`filled_read_netlist` makes the
text once per (spec, open cells, emitter) from :func:`~spicecross.circuit.tile.tile_elements`
through the emitter itself, with every input voltage and cell resistance left as a slot
(:data:`SLOT`), and fills the slots per read with the values' exact text (``repr`` of the
float, as the emitter's ``_fmt``): the same bytes as the emitter's own output (tested), at
≈ 1/10 of its cost on a 64×64 tile (a per-read deck's generation was 20–30 % of VACASK's run,
``benchmarks/spice_throughput.py``). The tile is still described in one place: the template is
the emitter's text of ``tile_elements``.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from itertools import chain

import numpy as np

from .tile import Element, TileSpec, cell_name, checked_read, input_name, tile_elements

#: A value's place in a template's text (emitted netlists hold no NUL character).
SLOT = "\x00"
#: Templates kept (a 128×128 tile's is ≈ 2 MB of text).
TEMPLATES_KEPT = 8

Emitter = Callable[[TileSpec, list[Element]], str]


def filled_read_netlist(emit: Emitter, spec: TileSpec, g_s: np.ndarray, v_in_v: np.ndarray
                        ) -> str:
    """``emit(spec, tile_elements(spec, g_s, v_in_v))`` for a resistive tile read (``g_s``
    (rows, cols) in S, ``v_in_v`` (rows,) in V): the same text, from the template of ``emit``
    (a module-level function, the cache key; it must write an element's ``value`` with
    ``_fmt``, which passes :data:`SLOT` through) for this spec and open cells."""
    g, v = checked_read(spec, g_s, v_in_v)
    on = g > 0
    parts, order = _template(emit, spec, on.tobytes(), on.shape)
    with np.errstate(divide="ignore"):         # open cells (1/0) fill no slot
        values = np.concatenate([v, 1.0 / g.ravel()])[order].tolist()
    return "".join(chain.from_iterable(zip(parts, map(repr, values)))) + parts[-1]


@functools.lru_cache(maxsize=TEMPLATES_KEPT)
def _template(emit: Emitter, spec: TileSpec, on_bytes: bytes, shape: tuple[int, int]
              ) -> tuple[list[str], np.ndarray]:
    """The text around the slots of ``emit``'s netlist of a read of ``spec`` whose cells
    ``on_bytes`` (a bool (rows, cols) array's bytes) are not open, and per slot its value's
    index in ``[inputs (rows), cell resistances (rows·cols, row-major)]``."""
    on = np.frombuffer(on_bytes, dtype=bool).reshape(shape)
    rows, cols = shape
    index = {("V", input_name(i)): i for i in range(rows)}
    index |= {("R", cell_name(i, j)): rows + i * cols + j for i, j in zip(*np.nonzero(on))}
    order, marked = [], []
    for e in tile_elements(spec, on.astype(np.float64), np.zeros(rows)):
        k = index.get((e.kind, e.name))
        if k is not None and not e.wave:
            order.append(k)
            e = e._replace(value=SLOT)
        marked.append(e)
    parts = emit(spec, marked).split(SLOT)
    if len(parts) != len(order) + 1:            # a value written twice, or not by _fmt
        raise RuntimeError(f"{getattr(emit, '__name__', emit)}: {len(parts) - 1} slots in the "
                           f"text for {len(order)} values")
    return parts, np.asarray(order, dtype=np.int64)
