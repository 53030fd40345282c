"""The golden files' directory and its ``manifest.json``: which files each golden case has and
their sha256, so a corrupt or hand-edited file is named before any comparison runs.

The files ship as package data in ``spicecross/data/golden``, read through
:mod:`importlib.resources` (so they work from a wheel as well as a checkout);
``spicecross golden update`` writes into that directory when it is writable, or into
``--root DIR``.
"""
from __future__ import annotations

import hashlib
import json
import os
from importlib import resources
from pathlib import Path
from typing import Union

from .store import write_text_atomic

try:
    from importlib.resources.abc import Traversable
except ImportError:  # Python 3.10
    from importlib.abc import Traversable

__all__ = ["MANIFEST", "MANIFEST_FORMAT", "GoldenRoot", "package_root", "writable_package_root",
           "sha256_of", "read_manifest", "verify_manifest", "write_manifest"]

#: A directory of golden files: a ``Path`` or the package's own data (a ``Traversable``).
GoldenRoot = Union[Path, Traversable]
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "spicecross-golden/1"


def package_root() -> Traversable:
    """The golden files shipped inside the package (``spicecross/data/golden``)."""
    return resources.files("spicecross") / "data" / "golden"


def writable_package_root() -> Path:
    """The package's golden directory as a writable ``Path`` (a source checkout or an editable
    install); ValueError when the package lives somewhere read-only."""
    root = package_root()
    path = Path(str(root))
    if not (isinstance(root, Path) and path.is_dir() and os.access(path, os.W_OK)):
        raise ValueError(f"the package's golden directory {root} is not writable; pass --root DIR")
    return path


def sha256_of(path: GoldenRoot) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_manifest(root: GoldenRoot) -> dict:
    """``{"format", "cases": {name: {"description", "files": {file name: sha256}}}}``."""
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise FileNotFoundError(f"no golden manifest {mpath}: not a golden directory "
                                "(run 'spicecross golden update --root DIR' to create one)")
    try:
        manifest = json.loads(mpath.read_text())
    except ValueError as exc:
        raise ValueError(f"golden manifest {mpath} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"golden manifest {mpath} is not in the {MANIFEST_FORMAT} format")
    return manifest


def verify_manifest(root: GoldenRoot, names: list[str] | None = None) -> None:
    """Check the sha256 of every file of the named cases (default all) against the manifest;
    ValueError naming the first missing or corrupt file."""
    cases = read_manifest(root)["cases"]
    for name in names if names is not None else list(cases):
        if name not in cases:
            raise ValueError(f"golden case {name!r} is not in {root / MANIFEST}")
        for fname, digest in cases[name]["files"].items():
            path = root / fname
            if not path.is_file():
                raise ValueError(f"golden file {path} listed in {MANIFEST} is missing")
            if sha256_of(path) != digest:
                raise ValueError(f"golden file {path} does not match its sha256 in {MANIFEST} "
                                 "(corrupt or edited by hand; 'spicecross golden update' regenerates it)")


def write_manifest(root: Path, name: str, description: str, files: list[str]) -> Path:
    """Rewrite ``root/manifest.json`` with case ``name``'s ``files`` (their sha256 as they are
    on disk now); the entries of other cases are kept."""
    mpath = root / MANIFEST
    try:
        cases = read_manifest(root)["cases"]
    except FileNotFoundError:
        cases = {}
    cases[name] = {"description": description, "files": {f: sha256_of(root / f) for f in files}}
    text = json.dumps({"format": MANIFEST_FORMAT, "cases": dict(sorted(cases.items()))}, indent=1)
    return write_text_atomic(mpath, text + "\n")
