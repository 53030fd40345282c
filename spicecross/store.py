"""Writing files safely, and the HDF5 store (h5py) for results, calibrations and provenance.

Every file the tool writes goes through :func:`atomic_path` (or its wrappers
:func:`write_text_atomic`, :func:`write_bytes_atomic`, :func:`atomic_h5`): the file is written
next to its destination under a temporary name and moved into place with ``os.replace``, so an
interrupted run leaves either the old file or the new one, never a corrupt one.
:func:`check_output_path` refuses, before any work, an output path that cannot be written (a
directory, a path under a regular file, a directory without write permission). Provenance (package version, simulator versions, netlist hashes,
seeds, TileSpec JSON, parameter sets) goes into attributes.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import numpy as np

from . import __version__
from .errors import UserError

if TYPE_CHECKING:      # h5py is imported where HDF5 is written, so the atomic-file helpers
    import h5py        # stay cheap to import (``spicecross netlist`` uses them)


def check_output_path(path: str | Path, what: str = "output") -> Path:
    """``path`` if a file can be written there, else :class:`UserError` naming it. Call it
    before the work whose result goes there: refuses an existing directory, a path below a
    regular file, and a directory the process cannot create files in (probed by creating and
    removing a temporary file in the nearest existing ancestor)."""
    p = Path(path)
    if str(path) == "" or p.is_dir():
        raise UserError(f"{what} {str(path)!r} is a directory; give a file name")
    parent = p.parent
    while not parent.exists():
        if parent.is_symlink() or parent == parent.parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise UserError(f"{what} {str(path)!r}: {parent} is a file, not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".spicecross-probe-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"{what} {str(path)!r}: cannot write in {parent} "
                        f"({exc.strerror or exc})") from None
    return p


def check_output_dir(path: str | Path, what: str = "output directory") -> Path:
    """``path`` if it is (or can be created as) a directory files can be written in."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{what} {str(path)!r} is a file, not a directory")
    check_output_path(p / ".spicecross-probe", what)
    return p


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix, so writers that go by the suffix keep
    working) that replaces ``path`` atomically when the block succeeds and is removed when it
    fails. The one way this package writes files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text_atomic(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def save_figure_atomic(fig, path: str | Path, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG to ``path`` atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return Path(path)


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
    import h5py

    path = Path(path)
    with atomic_path(path) as tmp:
        if copy_existing and path.exists():
            shutil.copyfile(path, tmp)
        with h5py.File(tmp, "a" if copy_existing else "w") as f:
            yield f


def write_group(f: h5py.File, name: str, arrays: Mapping[str, Any],
                attrs: Mapping[str, Any] | None = None) -> h5py.Group:
    """(Re)create group ``name`` holding ``arrays`` as datasets and ``attrs`` as attributes."""
    if name in f:
        del f[name]
    g = f.create_group(name)
    for k, v in arrays.items():
        arr = np.asarray(v)
        if arr.dtype.kind == "U":
            import h5py

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
