"""On-disk cache of programming results, addressed by the hash of their inputs: the transfer
matrices ``T`` of a batch of tiles (key: the ``TileSpec`` and the cell conductances, S) and the
IR-drop-compensated conductances (key: the weights, the spec and the ranges). A second run with
the same programmed network then loads them instead of solving the wire networks again.

Where: ``$SPICECROSS_TRANSFER_CACHE`` if set (``off`` disables the cache), else
``$SPICECROSS_CACHE/transfer`` if the solve cache is moved (so one variable isolates every
cache, as the test suite does), else ``~/.cache/spicecross/transfer``. One ``.npz`` per entry,
``<dir>/<first two hex digits>/<kind>-<sha256>.npz``, written atomically
(:func:`spicecross.store.atomic_path`).

Entries are untrusted: they are read with ``allow_pickle=False`` and must carry this format's
tag, their own key, the expected array names, shapes and dtype (float64), finite values and a
SHA-256 of the array bytes that matches. Anything else (truncated, corrupt, foreign, edited) is
rejected with a ``RuntimeWarning`` naming the file, and the caller recomputes and overwrites it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from ..store import atomic_path

__all__ = ["CACHE_ENV_VAR", "FORMAT", "cache_dir", "content_key", "disabled", "load_arrays",
           "store_arrays"]

#: Environment variable naming the cache directory (``off`` turns the cache off).
CACHE_ENV_VAR = "SPICECROSS_TRANSFER_CACHE"
#: Format tag stored in every entry and hashed into every key: bump it when what is stored, or
#: the algorithm that computes it, changes meaning (old entries then simply miss).
FORMAT = "spicecross-transfer-cache-1"


#: Depth of :func:`disabled` blocks in this process.
_disabled_depth = 0


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """No disk cache inside this block, whatever the environment says (arrays whose
    conductances evolve, e.g. under read disturb, would only fill it)."""
    global _disabled_depth
    _disabled_depth += 1
    try:
        yield
    finally:
        _disabled_depth -= 1


def cache_dir() -> Path | None:
    """The cache directory, or None when the cache is off (see module doc and
    :func:`disabled`)."""
    if _disabled_depth:
        return None
    env = os.environ.get(CACHE_ENV_VAR)
    if env is not None:
        return None if env.strip().lower() in ("", "off", "0", "none") else Path(env)
    solves = os.environ.get("SPICECROSS_CACHE")
    if solves:
        return Path(solves) / "transfer"
    return Path.home() / ".cache" / "spicecross" / "transfer"


def content_key(kind: str, params: Mapping, *arrays: np.ndarray) -> str:
    """``<kind>-<sha256>`` of the format tag, ``params`` (JSON, sorted keys) and each array's
    dtype, shape and bytes (C order)."""
    h = hashlib.sha256()
    h.update(FORMAT.encode())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    for a in arrays:
        a = np.asarray(a, order="C")
        h.update(f"|{a.dtype.str}{a.shape}|".encode())
        h.update(a.tobytes())
    return f"{kind}-{h.hexdigest()}"


def _path(root: Path, key: str) -> Path:
    return root / key.rsplit("-", 1)[-1][:2] / f"{key}.npz"


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.asarray(arrays[name], order="C")
        h.update(f"|{name}|{a.dtype.str}{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def load_arrays(key: str, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray] | None:
    """The float64 arrays stored under ``key`` (names and shapes as in ``shapes``), or None on a
    miss, when the cache is off, or when the entry is untrusted (a warning says why)."""
    root = cache_dir()
    if root is None:
        return None
    path = _path(root, key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["format"]) != FORMAT or str(z["key"]) != key:
                raise ValueError("written for another key or format")
            out = {}
            for name, shape in shapes.items():
                a = z[name]
                if a.dtype != np.float64 or a.shape != tuple(shape):
                    raise ValueError(f"{name!r} is {a.dtype}{a.shape}, expected float64{tuple(shape)}")
                out[name] = a.copy()
            if str(z["sha256"]) != _digest(out):
                raise ValueError("checksum mismatch")
    except Exception as exc:  # noqa: BLE001 - BadZipFile, EOFError, KeyError, …: all untrusted
        warnings.warn(f"ignoring untrusted transfer cache entry {path}: {exc}; recomputing",
                      RuntimeWarning, stacklevel=2)
        return None
    if not all(np.isfinite(a).all() for a in out.values()):
        warnings.warn(f"ignoring untrusted transfer cache entry {path}: non-finite values; "
                      "recomputing", RuntimeWarning, stacklevel=2)
        return None
    return out


def store_arrays(key: str, arrays: Mapping[str, np.ndarray]) -> Path | None:
    """Write ``arrays`` (float64) under ``key`` atomically; returns the path, or None when the
    cache is off or the directory cannot be written (the cache is an optimisation only)."""
    root = cache_dir()
    if root is None:
        return None
    arrays = {n: np.asarray(a, dtype=np.float64, order="C") for n, a in arrays.items()}
    path = _path(root, key)
    try:
        with atomic_path(path) as tmp:
            np.savez(tmp, format=np.array(FORMAT), key=np.array(key),
                     sha256=np.array(_digest(arrays)), **arrays)
    except OSError as exc:
        warnings.warn(f"cannot write transfer cache entry {path}: {exc}", RuntimeWarning,
                      stacklevel=2)
        return None
    return path
