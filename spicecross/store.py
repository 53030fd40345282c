"""HDF5 store (h5py) for results, calibrations and provenance.

Every write is atomic: the file is written next to its destination under a temporary name and
moved into place with ``os.replace``, so an interrupted run leaves either the old file or the
new one, never a corrupt one. Provenance (package version, simulator versions, netlist hashes,
seeds, TileSpec JSON, parameter sets) goes into attributes.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator, Mapping

import h5py
import numpy as np

from . import __version__


def provenance(**extra: Any) -> dict[str, Any]:
    """Standard provenance attributes plus ``extra`` (values JSON-encoded when not scalar)."""
    base: dict[str, Any] = {
        "spicecross_version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    base.update(extra)
    return base


def _attr(value: Any) -> Any:
    if isinstance(value, (str, int, float, np.integer, np.floating, np.bool_, bool)):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "iufb":
        return value
    return json.dumps(value, default=str, sort_keys=True)


def set_attrs(obj: h5py.HLObject, attrs: Mapping[str, Any]) -> None:
    for k, v in attrs.items():
        if v is not None:
            obj.attrs[k] = _attr(v)


@contextlib.contextmanager
def atomic_h5(path: str | Path, copy_existing: bool = False) -> Iterator[h5py.File]:
    """Open a temporary HDF5 file that replaces ``path`` atomically when the block succeeds.

    ``copy_existing``: start from a copy of the current file (to add to it), else from empty.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if copy_existing and path.exists():
        shutil.copyfile(path, tmp)
    try:
        with h5py.File(tmp, "a" if copy_existing else "w") as f:
            yield f
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_group(f: h5py.File, name: str, arrays: Mapping[str, Any],
                attrs: Mapping[str, Any] | None = None) -> h5py.Group:
    """(Re)create group ``name`` holding ``arrays`` as datasets and ``attrs`` as attributes."""
    if name in f:
        del f[name]
    g = f.create_group(name)
    for k, v in arrays.items():
        arr = np.asarray(v)
        if arr.dtype.kind == "U":
            g.create_dataset(k, data=arr.astype(h5py.string_dtype()))
        else:
            g.create_dataset(k, data=arr)
    set_attrs(g, attrs or {})
    return g


def read_attrs(obj: h5py.HLObject) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in obj.attrs.items():
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, str) and v[:1] in "[{":
            with contextlib.suppress(ValueError):
                v = json.loads(v)
        out[k] = v
    return out
