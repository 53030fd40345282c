"""Untrusted netlists: what makes a netlist more than a circuit to solve.

A SPICE netlist is a program. ngspice's ``.control`` blocks run ``shell`` commands and write
files, ``.include`` pulls in other files that may hold such blocks, OSDI and code models load
shared libraries; VACASK's ``postprocess`` runs a Python script. ``spicecross solve`` checks
every file with :func:`unsafe_line` before any simulator starts and refuses it (naming the
line) unless the user passes ``--trust-netlist``. The emitters in ``circuit/`` never write such
lines (VACASK's own ``control`` block of options, saves and analyses is allowed).
"""
from __future__ import annotations

import math
import re

TYPE_CHECKING = False   # typing would cost ``spicecross solve``'s start
if TYPE_CHECKING:
    import numpy as _np

__all__ = ["MAX_PHYSICAL_CURRENT_A", "check_currents", "check_trusted", "lines_holding",
           "plain_lines", "unsafe_line"]

#: Largest sense current (A) a result may report; beyond it (or NaN/inf) the run is a failure.
#: A tile read cannot approach it (10⁴ rows at 10 V through 1 S cells is 10⁵ A), while the
#: answers of a simulator that lost the circuit (ngspice's −1e12 A after a singular matrix)
#: lie far above it.
MAX_PHYSICAL_CURRENT_A = 1e6


def _simulation_error(message: str) -> Exception:
    from .simulators import SimulationError

    return SimulationError(message)


def check_currents(currents: _np.ndarray | list[float], label: str) -> _np.ndarray | list[float]:
    """``currents`` if every value is finite and at most :data:`MAX_PHYSICAL_CURRENT_A` in
    size, else :class:`~spicecross.spice.simulators.SimulationError` naming the first bad
    value. A list of floats is checked (and returned) as a list, without numpy."""
    if isinstance(currents, list):
        arr, values = currents, currents
    else:
        import numpy as _np

        arr = _np.asarray(currents, dtype=_np.float64)
        values = arr.ravel().tolist()
    bad = next((x for x in values
                if not (math.isfinite(x) and abs(x) <= MAX_PHYSICAL_CURRENT_A)), None)
    if bad is not None:
        raise _simulation_error(f"{label}: non-physical sense current {bad:g} A (limit "
                                f"{MAX_PHYSICAL_CURRENT_A:g} A): no valid operating point")
    return arr


# Netlist lines that make a simulator do more than solve the circuit: run shell commands or
# scripts, load code, or pull in other files that could. ``solve`` refuses them unless trusted.
_NGSPICE_UNSAFE = re.compile(
    r"^\s*(\.control|\.exec|\.include|\.inc|\.lib|shell|exec)\b", re.I)
_VACASK_UNSAFE = re.compile(r"^\s*(postprocess|embed|include|exec|shell|system)\b", re.I)
_VACASK_LOAD = re.compile(r"""^\s*load\s+["']?([^"'\s]+)""", re.I)


#: Characters other than ``\n`` that ``str.splitlines`` treats as line breaks, and the ASCII
#: separators ``str.isspace`` counts as blanks. An ASCII netlist without them has ``\n``-only
#: lines, and is searched by keyword (below); any other is checked line by line.
ODD_ASCII_BREAKS = "\r\x0b\x0c\x1c\x1d\x1e\x1f"


def plain_lines(text: str) -> bool:
    """True when ``text`` is ASCII and ``\n`` is its only line break (``str.splitlines`` cuts
    it exactly at its ``\n``, and a line's blanks are spaces and tabs): the emitters' output."""
    return text.isascii() and not any(c in text for c in ODD_ASCII_BREAKS)


#: Per simulator, the lines (after their ``\n``) whose first word starts with the first letter
#: of one of the keywords above, in either case: every unsafe line of a :func:`plain_lines`
#: text is one of them (or the text's first line). One regex pass over the text (its literal
#: ``\n`` prefix is searched like ``str.find``) leaves a few candidates in a tile netlist.
_CANDIDATES = {"ngspice": re.compile(r"\n[ \t]*[.sSeE]"),
               "vacask": re.compile(r"\n[ \t]*[pPeEiIsSlL]")}


def lines_holding(text: str, needle: str, haystack: str | None = None):
    """``(line start, needle's offset, line end)`` of each line of a :func:`plain_lines`
    ``text`` that holds ``needle`` (searched in ``haystack``, default ``text``, e.g. its
    lower-cased copy: same length and line breaks), in order, once per line; found with
    ``str.find``, which passes a 50 000-line tile netlist in milliseconds."""
    hay = text if haystack is None else haystack
    pos = hay.find(needle)
    while pos >= 0:
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        yield text.rfind("\n", 0, pos) + 1, pos, end
        pos = hay.find(needle, end)


def _unsafe(line: str, simulator: str) -> bool:
    if simulator == "ngspice":
        return bool(_NGSPICE_UNSAFE.match(line))
    load = _VACASK_LOAD.match(line)
    return bool(_VACASK_UNSAFE.match(line) or (load and _unsafe_load(load)))


def _unsafe_load(load: re.Match) -> bool:
    return load.group(1).startswith(("/", "~", "\\")) or ".." in load.group(1)


def unsafe_line(text: str, simulator: str) -> tuple[int, str] | None:
    """The first line (1-based number, text) of a netlist that would make ``simulator`` run
    commands, scripts or code, or read other files, instead of only solving the circuit
    (``simulator`` 'ngspice' or 'vacask'): ngspice ``.control``/``.exec`` blocks (the only
    place its commands run: ``shell``, ``pre_osdi``, ``write``…), ``shell``/``exec`` lines,
    ``.include``/``.lib``; VACASK ``postprocess``, ``embed``, ``include`` and ``load`` of a
    module outside its own library (an absolute path or one with ``..``). None when the
    netlist is inert. Lines are those of ``text.splitlines()``. A :func:`plain_lines` text is
    not read line by line: only its first line and the :data:`_CANDIDATES` lines are matched
    (a line's blanks are spaces and tabs there, so they are all the lines that can match)."""
    if simulator not in ("ngspice", "vacask"):
        raise ValueError(f"unknown simulator {simulator!r}")
    if not plain_lines(text):
        return _unsafe_line_by_line(text, simulator)
    starts = (0, *(m.start() + 1 for m in _CANDIDATES[simulator].finditer(text)))
    for start in starts:
        end = text.find("\n", start)
        line = text[start:end if end >= 0 else None]
        if _unsafe(line, simulator):
            return text.count("\n", 0, start) + 1, line.strip()
    return None


def _unsafe_line_by_line(text: str, simulator: str) -> tuple[int, str] | None:
    for k, line in enumerate(text.splitlines(), 1):
        if _unsafe(line, simulator):
            return k, line.strip()
    return None


def check_trusted(text: str, simulator: str, label: str) -> None:
    """:class:`~spicecross.errors.UserError` naming the file, line number and line when
    :func:`unsafe_line` finds one."""
    from ..errors import UserError

    bad = unsafe_line(text, simulator)
    if bad is not None:
        raise UserError(f"{label}:{bad[0]}: refusing to run {bad[1]!r} from an untrusted "
                        f"netlist (it makes {simulator} run commands or read other files); "
                        "pass --trust-netlist if you trust this file")
