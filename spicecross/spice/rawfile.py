"""Reader for SPICE raw files (binary or ASCII), as written by ``ngspice -b -r`` and VACASK.

Both simulators write the same Berkeley raw layout: a text header (``Title:``, ``Plotname:``,
``Flags:``, ``No. Variables:``, ``No. Points:``, ``Variables:`` …) followed by ``Binary:`` and
float64 (or complex128) values point by point. ASCII raw files are refused with a clear error. Several plots may follow one
another in one file (ngspice writes one per analysis).

This module imports numpy only when a plot's columns are asked for (:attr:`RawPlot.data`): a
real plot keeps its values as one flat ``array('d')``, so reading an operating point
(:meth:`RawPlot.point`) stays numpy-free (``spicecross solve``'s start-up).
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
    ``data[name]`` is a 1-D numpy array over the points, ``point(k)`` point k as floats."""

    def __init__(self, title: str, plotname: str, names: list[str], values, npts: int):
        self.title, self.plotname, self.names = title, plotname, names
        self.npts = npts
        self._values = values      # array('d') (real) or a numpy complex128 array, point-major

    @cached_property
    def data(self) -> dict:
        import numpy as np

        table = np.asarray(self._values).reshape(self.npts, len(self.names))
        return {n: table[:, i].copy() for i, n in enumerate(self.names)}

    def point(self, k: int = 0) -> dict[str, float]:
        """Point ``k`` of a real plot, name → value (no numpy)."""
        if not isinstance(self._values, array):
            raise ValueError(f"{self.plotname}: complex plot; use .data")
        nvar = len(self.names)
        return dict(zip(self.names, self._values[k * nvar:(k + 1) * nvar]))

    def __getitem__(self, name: str):
        return self.data[name.lower()]

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._name_set

    @cached_property
    def _name_set(self) -> frozenset[str]:
        return frozenset(self.names)


def read_raw(path: str | Path) -> list[RawPlot]:
    """Read every plot of a SPICE raw file; variable names are lower-cased."""
    blob = Path(path).read_bytes()
    plots: list[RawPlot] = []
    pos = 0
    while pos < len(blob):
        header: dict[str, str] = {}
        names: list[str] = []
        while True:
            end = blob.index(b"\n", pos)
            line = blob[pos:end].decode("latin-1").rstrip("\r")
            pos = end + 1
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key == "variables":
                nvar = int(header["no. variables"])
                end = _variables_end(blob, pos, nvar)
                names = _variable_names(blob[pos:end], nvar)
                if len(names) != nvar:
                    raise ValueError(f"{path}: {len(names)} variable lines, expected {nvar}")
                pos = end
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
        plots.append(RawPlot(header.get("title", ""), header.get("plotname", ""), names,
                             values, npts))
        while pos < len(blob) and blob[pos:pos + 1] in (b"\n", b"\r"):
            pos += 1
    return plots
