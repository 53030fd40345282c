"""Reader for SPICE raw files (binary or ASCII), as written by ``ngspice -b -r`` and VACASK.

Both simulators write the same Berkeley raw layout: a text header (``Title:``, ``Plotname:``,
``Flags:``, ``No. Variables:``, ``No. Points:``, ``Variables:`` …) followed by ``Binary:`` and
float64 (or complex128) values point by point. ASCII raw files are refused with a clear error. Several plots may follow one
another in one file (ngspice writes one per analysis).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class RawPlot:
    """One analysis of a raw file: ``data[name]`` is a 1-D array over the plot's points."""

    title: str
    plotname: str
    names: list[str]
    data: dict[str, np.ndarray] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.data[name.lower()]

    def __contains__(self, name: str) -> bool:
        return name.lower() in self.data


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
                for _ in range(nvar):
                    end = blob.index(b"\n", pos)
                    parts = blob[pos:end].decode("latin-1").split()
                    pos = end + 1
                    names.append(parts[1].lower())
                continue
            if key in ("binary", "values"):
                break
            header[key] = value.strip()
        nvar = int(header["no. variables"])
        npts = int(header["no. points"].split()[0])
        is_complex = "complex" in header.get("flags", "").lower()
        if key == "binary":
            dtype = np.complex128 if is_complex else np.float64
            count = nvar * npts
            values = np.frombuffer(blob, dtype=dtype, count=count, offset=pos)
            pos += values.nbytes
            table = values.reshape(npts, nvar)
        else:
            raise ValueError(f"{path}: ASCII raw files are not supported; write binary raw files "
                             "(ngspice's default, or 'set filetype=binary')")
        plot = RawPlot(header.get("title", ""), header.get("plotname", ""), names)
        plot.data = {n: table[:, i].copy() for i, n in enumerate(names)}
        plots.append(plot)
        while pos < len(blob) and blob[pos:pos + 1] in (b"\n", b"\r"):
            pos += 1
    return plots
