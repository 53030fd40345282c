"""Regenerate the bundled MNIST sample ``spicecross/data/mnist_sample.npz``.

The sample is the first 1000 images of the MNIST *test* split (uint8, 28×28) and their labels,
stored with ``np.savez_compressed`` under the keys ``images`` and ``labels``::

    python -m spicecross.nn.make_sample --data /path/to/root   # root holds MNIST/raw/
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

from spicecross.nn.datasets import default_data_root, read_mnist_raw, sample_path

SAMPLE_SIZE = 1000


def make_sample(root: str | Path, out: str | Path | None = None, n: int = SAMPLE_SIZE) -> Path:
    """Write the first ``n`` MNIST test images and labels from ``root`` to ``out`` and return it."""
    images, labels = read_mnist_raw(root, train=False)
    images = np.ascontiguousarray(images[:n], dtype=np.uint8)
    labels = np.ascontiguousarray(labels[:n], dtype=np.uint8)
    out_path = Path(out) if out is not None else sample_path()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_path, images=images, labels=labels)
    return out_path


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``python -m spicecross.nn.make_sample``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=default_data_root(),
                        help="data root holding MNIST/raw/ (default: $SPICECROSS_DATA)")
    parser.add_argument("--out", default=None, help="output .npz (default: the packaged file)")
    parser.add_argument("-n", type=int, default=SAMPLE_SIZE, help="number of test images")
    args = parser.parse_args(argv)
    if args.data is None:
        print("make_sample: error: pass --data DIR or set SPICECROSS_DATA", file=sys.stderr)
        return 2
    try:
        path = make_sample(args.data, args.out, args.n)
    except (FileNotFoundError, ValueError) as exc:
        print(f"make_sample: error: {exc}", file=sys.stderr)
        return 2
    with np.load(path) as npz:
        digest = hashlib.md5(npz["labels"].tobytes()).hexdigest()
        print(f"wrote {path}: images {npz['images'].shape}, labels md5 {digest}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
