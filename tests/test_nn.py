"""Tests of spicecross.nn: models, dataset readers (torchvision layout), training CLI, shipped weights."""
from __future__ import annotations

import gzip
import hashlib
import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from spicecross.nn.datasets import (
    NORMALIZE,
    load_dataset,
    load_mnist_sample,
    read_idx,
    read_mnist_raw,
    sample_path,
)
from spicecross.nn.models import INPUT_SHAPES, NUM_CLASSES, build_model
from spicecross.nn.train import evaluate, load_checkpoint, load_pretrained, pretrained_path

# The repository is <parent>/main and the shared data lives in <parent>/shared/data (also in CI).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HAVE_MNIST = (SHARED_DATA / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").is_file()
needs_mnist = pytest.mark.skipif(
    not HAVE_MNIST, reason=f"real MNIST not found at {SHARED_DATA}/MNIST/raw (shared data absent)"
)

# Well-known per-class counts of the MNIST splits.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
# md5 of the uncompressed label files (shared/data/README.md).
MNIST_LABEL_MD5 = {
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


# --------------------------------------------------------------------------- helpers

def _write_cifar(root: Path, name: str, n_per_file: int, seed: int = 0) -> None:
    """Write a synthetic CIFAR10/100 directory in torchvision's exact on-disk layout."""
    rng = np.random.default_rng(seed)
    if name == "cifar10":
        base, files, key, classes = root / "cifar-10-batches-py", \
            [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], b"labels", 10
    else:
        base, files, key, classes = root / "cifar-100-python", ["train", "test"], b"fine_labels", 100
    base.mkdir(parents=True)
    for fname in files:
        entry = {
            b"batch_label": fname.encode(),
            b"data": rng.integers(0, 256, size=(n_per_file, 3072), dtype=np.uint8),
            key: [int(v) for v in rng.integers(0, classes, size=n_per_file)],
            b"filenames": [f"img{i}.png".encode() for i in range(n_per_file)],
        }
        if name == "cifar100":
            entry[b"coarse_labels"] = [int(v) // 5 for v in entry[key]]
        with open(base / fname, "wb") as f:
            pickle.dump(entry, f, protocol=2)


def _idx_bytes(arr: np.ndarray) -> bytes:
    """Encode a uint8 array as an IDX file."""
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


# --------------------------------------------------------------------------- models

@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100"])
def test_model_output_shapes(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name).eval()
    x = torch.randn(2, *INPUT_SHAPES[name])
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, NUM_CLASSES[name])
    # Layers are plain torch modules, so a later pass can swap them by walking named_modules().
    kinds = {type(m) for _, m in model.named_modules()}
    assert nn.Conv2d in kinds and nn.Linear in kinds and nn.BatchNorm2d in kinds
    n_conv = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    n_lin = sum(isinstance(m, nn.Linear) for m in model.modules())
    assert (n_conv, n_lin) == {"mnist": (4, 1), "cifar10": (6, 2), "cifar100": (6, 3)}[name]


def test_mnist_model_layout() -> None:
    model = build_model("mnist")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 16, 32, 32]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    (linear,) = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert (linear.in_features, linear.out_features) == (32 * 7 * 7, 10)
    assert 25_000 < sum(p.numel() for p in model.parameters()) < 40_000


def test_build_model_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match="'resnet'.*mnist, cifar10, cifar100"):
        build_model("resnet")


# --------------------------------------------------------------------------- MNIST reader

@needs_mnist
def test_mnist_idx_reader_against_real_files() -> None:
    raw = SHARED_DATA / "MNIST" / "raw"
    for fname, digest in MNIST_LABEL_MD5.items():
        assert hashlib.md5((raw / fname).read_bytes()).hexdigest() == digest
    train_x, train_y = read_mnist_raw(SHARED_DATA, train=True)
    assert train_x.shape == (60000, 28, 28) and train_x.dtype == np.uint8
    assert np.bincount(train_y, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert train_y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]

    test = load_dataset("mnist", SHARED_DATA, train=False)
    x, y = test.tensors
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert np.bincount(y.numpy(), minlength=10).tolist() == MNIST_TEST_COUNTS
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    mean, std = NORMALIZE["mnist"]
    assert x.min().item() == pytest.approx(-mean[0] / std[0], abs=1e-5)
    assert x.max().item() == pytest.approx((1 - mean[0]) / std[0], abs=1e-5)


def test_mnist_reader_accepts_gz_and_limit(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 30), ("t10k", 12)):
        imgs = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        lbls = rng.integers(0, 10, size=n, dtype=np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(imgs)))
        (raw / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(lbls)))
        if prefix == "t10k":
            test_imgs, test_lbls = imgs, lbls
    assert read_idx(raw / "t10k-images-idx3-ubyte.gz").shape == (12, 28, 28)
    ds = load_dataset("mnist", tmp_path, train=False)
    assert ds.tensors[0].shape == (12, 1, 28, 28)
    assert ds.tensors[1].tolist() == test_lbls.tolist()
    mean, std = NORMALIZE["mnist"]
    expected = (test_imgs[3].astype(np.float32) / 255 - mean[0]) / std[0]
    np.testing.assert_allclose(ds.tensors[0][3, 0].numpy(), expected, rtol=1e-6, atol=1e-6)
    assert len(load_dataset("mnist", tmp_path, train=True, limit=7)) == 7


def test_idx_reader_rejects_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "bad-idx"
    bad.write_bytes(b"\x12\x34\x56\x78" + bytes(10))
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)
    short = tmp_path / "short-idx"
    short.write_bytes(_idx_bytes(np.zeros((3, 4), np.uint8))[:-1])
    with pytest.raises(ValueError, match="payload"):
        read_idx(short)


# --------------------------------------------------------------------------- CIFAR readers

@pytest.mark.parametrize("name,classes", [("cifar10", 10), ("cifar100", 100)])
def test_synthetic_cifar_in_torchvision_layout(tmp_path: Path, name: str, classes: int) -> None:
    _write_cifar(tmp_path, name, n_per_file=20)
    train = load_dataset(name, tmp_path, train=True)
    test = load_dataset(name, tmp_path, train=False)
    n_train = 5 * 20 if name == "cifar10" else 20
    assert len(train) == n_train and len(test) == 20
    x, y = train.tensors
    assert x.shape == (n_train, 3, 32, 32) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and 0 <= int(y.min()) and int(y.max()) < classes

    # Pixel layout: the 3072 bytes are R plane, G plane, B plane, each 32×32 row-major.
    base = tmp_path / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    first = base / ("data_batch_1" if name == "cifar10" else "train")
    with open(first, "rb") as f:
        entry = pickle.load(f, encoding="bytes")
    mean, std = NORMALIZE[name]
    raw = entry[b"data"][0].reshape(3, 32, 32).astype(np.float32) / 255
    expected = (raw - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[:, None, None]
    np.testing.assert_allclose(x[0].numpy(), expected, rtol=1e-5, atol=1e-5)
    label_key = b"labels" if name == "cifar10" else b"fine_labels"
    assert y[:20].tolist() == list(entry[label_key])


def test_missing_dataset_dir_names_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    with pytest.raises(FileNotFoundError, match="no-such-dir"):
        load_dataset("mnist", missing, train=True)
    # Root exists but holds no CIFAR10 directory: the message names the expected directory.
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py") as info:
        load_dataset("cifar10", tmp_path, train=False)
    assert str(tmp_path) in str(info.value) and "\n" not in str(info.value)
    # One batch file missing.
    _write_cifar(tmp_path, "cifar10", n_per_file=2)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        load_dataset("cifar10", tmp_path, train=True)
    with pytest.raises(FileNotFoundError, match=r"MNIST.*raw"):
        load_dataset("mnist", tmp_path, train=False)
    with pytest.raises(ValueError, match="imagenet"):
        load_dataset("imagenet", tmp_path, train=False)


def test_default_root_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_cifar(tmp_path, "cifar100", n_per_file=3)
    monkeypatch.setenv("SPICECROSS_DATA", str(tmp_path))
    assert len(load_dataset("cifar100", None, train=False)) == 3
    monkeypatch.delenv("SPICECROSS_DATA")
    with pytest.raises(FileNotFoundError, match="SPICECROSS_DATA"):
        load_dataset("cifar100", None, train=False)


# --------------------------------------------------------------------------- bundled sample & weights

def test_bundled_mnist_sample_loads() -> None:
    assert sample_path().is_file()
    ds = load_mnist_sample()
    x, y = ds.tensors
    assert x.shape == (1000, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    if HAVE_MNIST:  # the sample is exactly the first 1000 test images
        imgs, lbls = read_mnist_raw(SHARED_DATA, train=False)
        with np.load(sample_path()) as npz:
            assert np.array_equal(npz["images"], imgs[:1000])
            assert np.array_equal(npz["labels"], lbls[:1000])


def test_pretrained_mnist_on_sample() -> None:
    model = load_pretrained("mnist")
    assert not model.training
    assert evaluate(model, load_mnist_sample()) >= 98.0
    _, meta = load_checkpoint(pretrained_path("mnist"))
    assert meta["model"] == "mnist" and meta["seed"] == 0 and meta["test_accuracy"] >= 98.5
    assert pretrained_path("mnist").stat().st_size < 500_000
    with pytest.raises(FileNotFoundError, match="cifar10"):
        load_pretrained("cifar10")


@needs_mnist
def test_pretrained_mnist_full_test_accuracy() -> None:
    model = load_pretrained("mnist")
    acc = evaluate(model, load_dataset("mnist", SHARED_DATA, train=False))
    assert acc >= 98.5, f"shipped MNIST weights score {acc:.2f} % on the 10 000 test images"


# --------------------------------------------------------------------------- training CLI

def test_cli_train_on_synthetic_cifar10(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from spicecross.cli import main

    data = tmp_path / "data"
    _write_cifar(data, "cifar10", n_per_file=64)
    out = tmp_path / "ckpt" / "c10.pt"
    rc = main(["train", "cifar10", "--data", str(data), "--epochs", "1", "--seed", "3",
               "--limit", "256", "--out", str(out), "--quiet"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["model"] == "cifar10" and summary["train_samples"] == 256
    assert summary["test_samples"] == 64
    assert summary["seconds"] > 0
    assert out.is_file()
    model, meta = load_checkpoint(out)
    assert meta["model"] == "cifar10" and meta["seed"] == 3 and meta["epochs"] == 1
    assert meta["test_accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-3)
    assert evaluate(model, load_dataset("cifar10", data, train=False)) == pytest.approx(
        meta["test_accuracy"])


def test_cli_train_missing_data_is_one_line_error(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from spicecross.cli import main

    rc = main(["train", "cifar100", "--data", str(tmp_path / "absent"), "--epochs", "1",
               "--out", str(tmp_path / "x.pt"), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert "absent" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.pt").exists()
