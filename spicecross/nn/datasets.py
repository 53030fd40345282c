"""MNIST / CIFAR10 / CIFAR100 loading from torchvision's on-disk layout, without torchvision.

The files are the ones ``torchvision.datasets.{MNIST,CIFAR10,CIFAR100}(root, download=False)``
reads, so a data directory prepared for torchvision works here unchanged::

    <root>/MNIST/raw/train-images-idx3-ubyte   (or .gz)     IDX, big-endian header
    <root>/MNIST/raw/train-labels-idx1-ubyte   (or .gz)
    <root>/MNIST/raw/t10k-images-idx3-ubyte    (or .gz)
    <root>/MNIST/raw/t10k-labels-idx1-ubyte    (or .gz)
    <root>/cifar-10-batches-py/data_batch_1 … data_batch_5, test_batch
                                   python pickles: {b"data": N×3072 uint8, b"labels": [...]}
    <root>/cifar-100-python/train, test
                                   python pickles: {b"data": N×3072 uint8, b"fine_labels": [...]}

Images come back as float32 tensors ``(N, C, H, W)`` scaled to [0, 1] and normalised with the
per-channel mean/std in :data:`NORMALIZE` (the values training uses); labels as int64.

The CIFAR files are Python pickles, as torchvision's are. They are read with a restricted
unpickler (:func:`load_cifar_pickle`) that builds only dicts, lists, strings, numbers and numpy
arrays, the CIFAR layout, so a crafted file cannot run code: anything else is refused.

A small bundled sample (the first 1000 MNIST test images, ``spicecross/data/mnist_sample.npz``)
is available through :func:`load_mnist_sample` for demos and tests on machines without data.
"""
from __future__ import annotations

import gzip
import os
import pickle
import struct
from importlib import resources
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:      # torch is imported inside the functions that need it, so the data-root
    import torch       # lookup and the constants stay cheap to import (the CLI uses them)
    from torch.utils.data import TensorDataset

__all__ = [
    "DATA_ENV_VAR",
    "NORMALIZE",
    "SAMPLE_FILENAME",
    "default_data_locations",
    "data_root",
    "default_data_root",
    "normalize",
    "read_idx",
    "read_mnist_raw",
    "read_cifar_raw",
    "load_cifar_pickle",
    "load_dataset",
    "load_mnist_sample",
    "sample_path",
]

#: Environment variable that names the default data root (the directory holding ``MNIST/``,
#: ``cifar-10-batches-py/`` and ``cifar-100-python/``).
DATA_ENV_VAR = "SPICECROSS_DATA"

#: Per-channel ``(mean, std)`` of the training images in [0, 1] units, as commonly used with
#: torchvision's ``transforms.Normalize``.
NORMALIZE: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}

#: File name of the bundled MNIST sample inside the ``spicecross/data`` package directory.
SAMPLE_FILENAME = "mnist_sample.npz"

_MNIST_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_MNIST_LAYOUT = "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (torchvision layout)"
_CIFAR_DIRS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
_CIFAR_FILES = {
    ("cifar10", True): [f"data_batch_{i}" for i in range(1, 6)],
    ("cifar10", False): ["test_batch"],
    ("cifar100", True): ["train"],
    ("cifar100", False): ["test"],
}
_CIFAR_LABEL_KEY = {"cifar10": b"labels", "cifar100": b"fine_labels"}
_CIFAR_LAYOUT = {
    "cifar10": "cifar-10-batches-py/{data_batch_1..5,test_batch} (torchvision layout)",
    "cifar100": "cifar-100-python/{train,test} (torchvision layout)",
}
# IDX element-type codes (third magic byte) that MNIST-style files use.
_IDX_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def default_data_locations() -> list[Path]:
    """Where a data root is looked for when neither an explicit one nor ``$SPICECROSS_DATA`` is
    given: ``shared/data`` beside the checkout this package runs from, then beside the current
    directory (``../shared/data``)."""
    return [Path(__file__).resolve().parents[3] / "shared" / "data",
            Path.cwd().parent / "shared" / "data"]


def data_root(explicit: str | Path | None = None, *, defaults: bool = True,
              contains: str | None = None) -> Path | None:
    """The one data-root resolver. Candidates in order of precedence:

    1. ``explicit`` (a ``--data`` option, a function argument);
    2. the environment variable ``$SPICECROSS_DATA`` (:data:`DATA_ENV_VAR`);
    3. if ``defaults``, :func:`default_data_locations` (only those that are directories).

    Without ``contains`` the first given candidate is returned as is (an explicit or
    environment root that does not exist is for the loader to report). With ``contains`` (a
    path relative to the root, e.g. ``"MNIST/raw/t10k-images-idx3-ubyte"``) the first candidate
    holding it is returned, so a root without the wanted dataset is skipped. ``None`` when no
    candidate qualifies.
    """
    env = os.environ.get(DATA_ENV_VAR, "").strip()
    given = [Path(c).expanduser() for c in (explicit, env) if c is not None and str(c).strip()]
    fallback = [p for p in default_data_locations() if p.is_dir()] if defaults else []
    for p in given + fallback:
        if contains is None or (p / contains).exists():
            return p
    return None


def default_data_root() -> Path | None:
    """The data root named by ``$SPICECROSS_DATA``, or ``None`` when it is unset/empty
    (:func:`data_root` without an explicit root or the default locations)."""
    return data_root(defaults=False)


def _check_name(name: str) -> str:
    key = name.lower() if isinstance(name, str) else name
    if key not in NORMALIZE:
        raise ValueError(f"unknown dataset name {name!r}: expected one of {', '.join(NORMALIZE)}")
    return key


def normalize(images: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    """Turn uint8 images ``(N, C, H, W)`` (or ``(N, H, W)`` for MNIST) into normalised float32.

    Pixels are scaled to [0, 1], then each channel has ``NORMALIZE[name]`` mean subtracted and
    is divided by its std. Returns a contiguous ``(N, C, H, W)`` float32 tensor.
    """
    import torch

    key = _check_name(name)
    if isinstance(images, torch.Tensor):
        x = images
    else:
        arr = np.asarray(images)
        x = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W) or (N, H, W), got {tuple(x.shape)}")
    mean, std = NORMALIZE[key]
    if x.shape[1] != len(mean):
        raise ValueError(f"{key} images must have {len(mean)} channel(s), got {x.shape[1]}")
    x = x.to(torch.float32).div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return ((x - m) / s).contiguous()


def _open_maybe_gz(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (plain or ``.gz``) and return its array with its declared shape.

    Raises ``ValueError`` when the header is not a valid IDX header or the payload size does not
    match it.
    """
    path = Path(path)
    with _open_maybe_gz(path) as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {data[:4].hex()})")
    dtype = _IDX_DTYPES[data[2]]
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{path}: IDX payload is {len(data) - header} bytes, header {shape} implies {expected}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=False) if dtype.itemsize > 1 else arr


def _find_mnist_file(raw_dir: Path, stem: str) -> Path:
    for candidate in (raw_dir / stem, raw_dir / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"MNIST file not found: {raw_dir / stem} (nor .gz); expected <root>/{_MNIST_LAYOUT}"
    )


def read_mnist_raw(root: str | Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Return MNIST ``(images uint8 (N, 28, 28), labels uint8 (N,))`` from ``<root>/MNIST/raw``."""
    raw_dir = Path(root) / "MNIST" / "raw"
    if not raw_dir.is_dir():
        raise FileNotFoundError(
            f"MNIST directory not found: {raw_dir}; expected <root>/{_MNIST_LAYOUT}"
        )
    img_stem, lbl_stem = _MNIST_FILES[bool(train)]
    images = read_idx(_find_mnist_file(raw_dir, img_stem))
    labels = read_idx(_find_mnist_file(raw_dir, lbl_stem))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"MNIST files in {raw_dir} disagree: images {images.shape}, labels {labels.shape}"
        )
    return images, labels


# The only globals a CIFAR pickle needs: numpy's array reconstruction (numpy 1 and 2 module
# names) and the bytes codec of protocol-2 pickles written by Python 3. None of them runs code
# the file chooses.
_CIFAR_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})


class _CifarUnpickler(pickle.Unpickler):
    """Builds only the CIFAR layout; any other class or function is an UnpicklingError."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _CIFAR_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused {module}.{name}: a CIFAR file holds only "
                                     "dicts, lists and numpy arrays")


def load_cifar_pickle(path: str | Path) -> dict[Any, Any]:
    """One CIFAR batch file through the restricted unpickler: a dict; ValueError naming the
    file when it holds anything else (or is corrupt)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, MemoryError) as exc:
        raise ValueError(f"{path}: not a CIFAR batch file ({exc.__class__.__name__}: "
                         f"{exc})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return obj


_load_pickle = load_cifar_pickle


def read_cifar_raw(name: str, root: str | Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Return CIFAR ``(images uint8 (N, 3, 32, 32), labels int64 (N,))`` from torchvision's layout.

    ``name`` is "cifar10" (``<root>/cifar-10-batches-py``) or "cifar100"
    (``<root>/cifar-100-python``, fine labels).
    """
    key = _check_name(name)
    if key not in _CIFAR_DIRS:
        raise ValueError(f"read_cifar_raw handles cifar10 and cifar100, not {name!r}")
    base = Path(root) / _CIFAR_DIRS[key]
    if not base.is_dir():
        raise FileNotFoundError(
            f"{key.upper()} directory not found: {base}; expected <root>/{_CIFAR_LAYOUT[key]}"
        )
    label_key = _CIFAR_LABEL_KEY[key]
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for fname in _CIFAR_FILES[(key, bool(train))]:
        path = base / fname
        if not path.is_file():
            raise FileNotFoundError(
                f"{key.upper()} file not found: {path}; expected <root>/{_CIFAR_LAYOUT[key]}"
            )
        entry = _load_pickle(path)
        if b"data" not in entry or label_key not in entry:
            raise ValueError(f"{path}: pickle lacks the keys b'data' and {label_key!r}")
        data = entry[b"data"]
        if not (isinstance(data, np.ndarray) and data.dtype == np.uint8):
            raise ValueError(f"{path}: b'data' must be an N×3072 uint8 array, got "
                             f"{type(data).__name__} {getattr(data, 'dtype', '')}".rstrip())
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ValueError(f"{path}: b'data' must be N×3072 uint8, got shape {data.shape}")
        try:
            labels = np.asarray(entry[label_key], dtype=np.int64).reshape(-1)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{path}: {label_key!r} must be a list of integer labels") from None
        if labels.shape[0] != data.shape[0]:
            raise ValueError(f"{path}: {data.shape[0]} images but {labels.shape[0]} labels")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels)
    return np.concatenate(xs), np.concatenate(ys)


def _to_dataset(images: np.ndarray, labels: np.ndarray, name: str,
                limit: int | None) -> TensorDataset:
    import torch
    from torch.utils.data import TensorDataset

    if limit is not None:
        if limit <= 0:
            raise ValueError(f"limit must be a positive number of samples, got {limit}")
        images, labels = images[:limit], labels[:limit]
    x = normalize(images, name)
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    return TensorDataset(x, y)


def load_dataset(name: str, root: str | Path | None, train: bool,
                 limit: int | None = None) -> TensorDataset:
    """Load the train or test split of ``name`` ("mnist", "cifar10", "cifar100") from ``root``.

    ``root`` is the directory torchvision would be given (holding ``MNIST/``,
    ``cifar-10-batches-py/`` or ``cifar-100-python/``); ``None`` means :func:`default_data_root`.
    ``limit`` keeps only the first ``limit`` samples. Returns a ``TensorDataset`` of normalised
    float32 images ``(N, C, H, W)`` and int64 labels. Raises ``FileNotFoundError`` naming the
    missing path and the expected layout, ``ValueError`` for a bad name or malformed file.
    """
    key = _check_name(name)
    if root is None:
        root = default_data_root()
        if root is None:
            raise FileNotFoundError(
                f"no data directory given: pass root (CLI: --data DIR) or set ${DATA_ENV_VAR}; "
                "spicecross.nn.datasets.load_mnist_sample() gives a bundled 1000-image MNIST sample"
            )
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"data directory not found: {root}; expected it to hold "
            f"{_MNIST_LAYOUT if key == 'mnist' else _CIFAR_LAYOUT[key]}"
        )
    if key == "mnist":
        images, labels = read_mnist_raw(root, train)
    else:
        images, labels = read_cifar_raw(key, root, train)
    return _to_dataset(images, labels, key, limit)


def sample_path() -> Path:
    """Path of the bundled MNIST sample file ``spicecross/data/mnist_sample.npz``."""
    return Path(str(resources.files("spicecross") / "data" / SAMPLE_FILENAME))


def load_mnist_sample(limit: int | None = None) -> TensorDataset:
    """Load the bundled sample: the first 1000 MNIST test images, normalised like MNIST training.

    Useful when no dataset directory is available (demos, quick checks). Raises
    ``FileNotFoundError`` if the package was installed without its data files.
    """
    path = sample_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"bundled MNIST sample not found: {path}; regenerate it with "
            "python -m spicecross.nn.make_sample --data <root with MNIST/raw>"
        )
    with np.load(path) as npz:
        images, labels = npz["images"], npz["labels"]
    return _to_dataset(images, labels, "mnist", limit)
