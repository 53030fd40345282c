"""Reader for SPICE raw files (binary or ASCII), as written by ``ngspice -b -r`` and VACASK.

Both simulators write the same Berkeley raw layout: a text header (``Title:``, ``Plotname:``,
``Flags:``, ``No. Variables:``, ``No. Points:``, ``Variables:`` …) followed by ``Binary:`` and
float64 (or complex128) values point by point. ASCII raw files are refused with a clear error. Several plots may follow one
another in one file (ngspice writes one per analysis).

This module imports numpy only when a plot's columns are asked for (:attr:`RawPlot.data`): a
real plot keeps its values as one flat ``array('d')``, so reading an operating point
(:meth:`RawPlot.point`) stays numpy-free (``spicecross solve``'s start-up). The variable names
are parsed (and checked) when first used: :meth:`RawPlot.variables_with` finds the few
variables a caller needs (a tile's sense currents) in the raw bytes, without turning 33 000
names into strings.
"""
from __future__ import annotations

import re
from array import array
from functools import cached_property
from pathlib import Path

#: One line of a raw file's ``Variables:`` block: index, name, type.
_VARIABLE = re.compile(rb"^[ \t]*\d+[ \t]+(\S+)", re.M)


def _variables_end(blob: bytes, pos: int, nvar: int) -> int:
    """Offset just past the ``nvar`` variable lines that start at ``pos``: the ``Binary:`` or
    ``Values:`` line that follows them when it is exactly ``nvar`` lines on, else line by line."""
    for marker in (b"\nBinary:", b"\nValues:"):
        at = blob.find(marker, pos)
        if at >= 0 and blob.count(b"\n", pos, at + 1) == nvar:
            return at + 1
    end = pos
    for _ in range(nvar):
        end = blob.index(b"\n", end) + 1
    return end


def _variable_names(block: bytes, nvar: int) -> list[str]:
    """The lower-cased names of a ``Variables:`` block of ``nvar`` lines (index, name, type and
    maybe more): one split of the whole block when every line has exactly three fields (the
    common case, ~5× faster than a regex per line), else one regex match per line."""
    words = block.decode("latin-1").lower().split()
    if len(words) == 3 * nvar and words[0::3] == [str(k) for k in range(nvar)]:
        return words[1::3]
    return [m.decode("latin-1").lower() for m in _VARIABLE.findall(block)]


class RawPlot:
    """One analysis of a raw file: ``names`` (lower-cased) and ``npts`` points of their values;
    ``data[name]`` is a 1-D numpy array over the points, ``point(k)`` point k as floats.

    ``names`` is a list, or None with ``block`` (the raw ``Variables:`` lines) and ``nvar``:
    then the names are parsed on first use (ValueError naming ``source`` when the block is not
    ``nvar`` variable lines)."""

    def __init__(self, title: str, plotname: str, names: list[str] | None, values, npts: int,
                 *, block: bytes = b"", nvar: int | None = None, source: str = ""):
        self.title, self.plotname = title, plotname
        self.npts = npts
        self._values = values      # array('d') (real) or a numpy complex128 array, point-major
        self._block, self._source = block, source
        if names is not None:
            self.__dict__["names"] = names
        self.nvar = len(names) if names is not None else int(nvar or 0)

    @cached_property
    def names(self) -> list[str]:
        names = _variable_names(self._block, self.nvar)
        if len(names) != self.nvar:
            raise ValueError(f"{self._source}: {len(names)} variable lines, expected {self.nvar}")
        return names

    @cached_property
    def data(self) -> dict:
        table, names = self.table(), self.names
        return {n: table[:, i].copy() for i, n in enumerate(names)}

    def row(self, k: int = 0) -> array:
        """Point ``k`` of a real plot: its values in the order of the variables (no numpy)."""
        if not isinstance(self._values, array):
            raise ValueError(f"{self.plotname}: complex plot; use .data")
        return self._values[k * self.nvar:(k + 1) * self.nvar]

    def table(self):
        """The values as a numpy array, shape (npts, nvar)."""
        import numpy as np

        return np.asarray(self._values).reshape(self.npts, self.nvar)

    def point(self, k: int = 0) -> dict[str, float]:
        """Point ``k`` of a real plot, name → value (no numpy)."""
        return dict(zip(self.names, self.row(k)))

    def variables_with(self, needle: str) -> list[tuple[int, str]]:
        """(index, name) of the variables whose name holds ``needle``, in order. Before the
        names are parsed: the lines of the block holding it (``bytes.find`` in its lower-cased
        copy; an ASCII ``needle`` is in a latin-1 name exactly when it is in its bytes lowered),
        each read as :data:`_VARIABLE` reads it, its index counted in lines."""
        if "names" in self.__dict__ or not needle.isascii():
            return [(i, n) for i, n in enumerate(self.names) if needle in n]
        block, low, hay = self._block, self._block.lower(), needle.encode()
        found, line, counted = [], 0, 0
        pos = low.find(hay)
        while pos >= 0:
            start = low.rfind(b"\n", 0, pos) + 1
            end = low.find(b"\n", pos)
            end = len(low) if end < 0 else end
            line += low.count(b"\n", counted, start)
            counted = start
            m = _VARIABLE.match(block, start)
            if m is None:
                raise ValueError(f"{self._source}: unreadable variable line "
                                 f"{block[start:end].decode('latin-1').strip()!r}")
            name = m.group(1).decode("latin-1").lower()
            if needle in name:
                found.append((line, name))
            pos = low.find(hay, end)
        return found

    def __getitem__(self, name: str):
        return self.data[name.lower()]

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._name_set

    @cached_property
    def _name_set(self) -> frozenset[str]:
        return frozenset(self.names)


def read_raw(path: str | Path) -> list[RawPlot]:
    """Read every plot of a SPICE raw file; variable names are lower-cased."""
    with open(path, "rb") as f:
        blob = f.read()
    plots: list[RawPlot] = []
    pos = 0
    while pos < len(blob):
        header: dict[str, str] = {}
        block = b""
        while True:
            end = blob.index(b"\n", pos)
            line = blob[pos:end].decode("latin-1").rstrip("\r")
            pos = end + 1
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key == "variables":
                end = _variables_end(blob, pos, int(header["no. variables"]))
                block, pos = blob[pos:end], end
                continue
            if key in ("binary", "values"):
                break
            header[key] = value.strip()
        nvar = int(header["no. variables"])
        npts = int(header["no. points"].split()[0])
        is_complex = "complex" in header.get("flags", "").lower()
        if key != "binary":
            raise ValueError(f"{path}: ASCII raw files are not supported; write binary raw files "
                             "(ngspice's default, or 'set filetype=binary')")
        nbytes = nvar * npts * (16 if is_complex else 8)
        if pos + nbytes > len(blob):
            raise ValueError(f"{path}: truncated: {len(blob) - pos} bytes of values, "
                             f"expected {nbytes}")
        if is_complex:
            import numpy as np

            values = np.frombuffer(blob, dtype=np.complex128, count=nvar * npts, offset=pos)
        else:
            values = array("d")
            values.frombytes(blob[pos:pos + nbytes])
        pos += nbytes
        plots.append(RawPlot(header.get("title", ""), header.get("plotname", ""), None,
                             values, npts, block=block, nvar=nvar, source=str(path)))
        while pos < len(blob) and blob[pos:pos + 1] in (b"\n", b"\r"):
            pos += 1
    return plots
