"""Training and evaluation of the seed paper's CNNs, and the shipped pretrained MNIST weights.

``train_model`` is seeded and as deterministic as torch allows on CPU: the same name, data,
seed, epochs, batch size and torch version give the same weights. Checkpoints are plain
``torch.save`` dicts (loadable with ``torch.load(..., weights_only=True)``)::

    {"format": "spicecross.nn.checkpoint/1", "model": "mnist", "seed": 0, "epochs": 2,
     "test_accuracy": 98.9, ..., "state_dict": {...}}

The shipped ``spicecross/data/mnist_cnn.pt`` was produced with
``spicecross train mnist --data <root> --epochs 2 --seed 0 --out spicecross/data/mnist_cnn.pt``
(Adam, lr 2e-3, cosine decay, batch 128, no K-fold); its metadata says so (``recipe``,
``optimizer``, ``schedule``, ``folds``).

Schedules (``schedule=``, CLI ``--schedule``), over all steps of the run:

* ``cosine`` (default): ``lr·(1 + cos(π·step/steps))/2``, from ``lr`` to 0;
* ``constant``: ``lr`` throughout;
* ``step``: ``lr``, then ×0.1 after half and again after three quarters of the steps.

K-fold cross-validation (``folds=K``, CLI ``--folds K``; the seed paper assessed its networks
with K-fold cross-validation): the training split is cut into K folds by a permutation seeded
from ``seed``; for each fold a fresh network (same seed) is trained on the other K − 1 folds and
its accuracy on the held-out fold is recorded (``fold_accuracies``, their mean and standard
deviation); the network returned and saved is then trained on the whole training split, so the
folds assess the recipe and do not change the shipped network.
"""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset
from tqdm import tqdm

from spicecross.errors import UserError, unreadable
from spicecross.nn.datasets import load_dataset
from spicecross.nn.models import build_model
from spicecross.store import atomic_path, check_output_path
from spicecross.threads import limited_threads, threads_for

__all__ = [
    "CHECKPOINT_FORMAT",
    "SCHEDULES",
    "fold_indices",
    "lr_scheduler",
    "train_model",
    "evaluate",
    "load_checkpoint",
    "load_pretrained",
    "pretrained_path",
    "save_checkpoint",
]

#: Value of the ``format`` key in checkpoints written by :func:`train_model`.
CHECKPOINT_FORMAT = "spicecross.nn.checkpoint/1"
_DEFAULT_LR = 2e-3
#: Learning-rate schedules of :func:`train_model` (module doc).
SCHEDULES = ("cosine", "constant", "step")


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    """Ask torch for deterministic kernels (warn-only) for the block, then restore the setting."""
    was = torch.are_deterministic_algorithms_enabled()
    was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=was_warn)


def evaluate(model: nn.Module, dataset: TensorDataset, batch_size: int = 1000,
             threads: int | None = None) -> float:
    """Return the top-1 accuracy of ``model`` on ``dataset`` in percent (0–100).

    The model is run in eval mode without gradients, with at most ``threads`` intra-op threads
    (default :func:`spicecross.threads.threads_for`); its previous train/eval mode is restored.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    images, labels = dataset.tensors[0], dataset.tensors[1]
    n = len(labels)
    if n == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    was_training = model.training
    model.eval()
    correct = 0
    try:
        with limited_threads(threads or threads_for()), torch.no_grad():
            for start in range(0, n, batch_size):
                logits = model(images[start:start + batch_size])
                correct += int((logits.argmax(dim=1) == labels[start:start + batch_size]).sum())
    finally:
        model.train(was_training)
    return 100.0 * correct / n


def _augment(x: Tensor, gen: torch.Generator, pad: int = 4) -> Tensor:
    """CIFAR-style augmentation on a normalised batch: random crop (zero padding) and h-flip."""
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    padded = F.pad(x, (pad, pad, pad, pad))
    offsets = torch.randint(0, 2 * pad + 1, (b, 2), generator=gen).tolist()
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets)])


def lr_scheduler(optimizer: torch.optim.Optimizer, schedule: str, steps: int
                 ) -> torch.optim.lr_scheduler.LRScheduler:
    """The per-step learning-rate scheduler ``schedule`` (one of :data:`SCHEDULES`, module
    doc) over ``steps`` optimizer steps."""
    steps = max(int(steps), 1)
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    if schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    if schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=[steps // 2, (3 * steps) // 4], gamma=0.1)
    raise UserError(f"bad schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")


def fold_indices(n: int, folds: int, seed: int) -> list[Tensor]:
    """Sample indices of ``folds`` disjoint folds covering ``range(n)`` (sizes differ by at
    most one), from a permutation seeded with ``seed``."""
    if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= n:
        raise UserError(f"bad folds {folds!r}: need an integer from 2 to the {n} training samples")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return list(torch.tensor_split(order, folds))


def _fit(model_name: str, train_set: TensorDataset, epochs: int, seed: int, batch_size: int,
         lr: float, schedule: str, augment: bool, progress: bool, label: str) -> nn.Module:
    """A fresh network ``model_name`` (initial weights from ``seed``) trained on ``train_set``:
    Adam, cross-entropy, ``schedule`` per step, batches shuffled from ``seed``."""
    torch.manual_seed(seed)
    model = build_model(model_name)  # initial weights drawn from the seeded RNG
    gen = torch.Generator().manual_seed(seed)
    images, labels = train_set.tensors
    n = len(labels)
    steps_per_epoch = (n + batch_size - 1) // batch_size
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = lr_scheduler(optimizer, schedule, epochs * steps_per_epoch)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        bar = tqdm(range(steps_per_epoch), desc=f"{label} epoch {epoch + 1}/{epochs}",
                   unit="batch", disable=not progress, leave=True)
        running = 0.0
        for step in bar:
            idx = order[step * batch_size:(step + 1) * batch_size]
            x, y = images[idx], labels[idx]
            if augment:
                x = _augment(x, gen)
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_value = loss.item()
            running = 0.9 * running + 0.1 * loss_value if step else loss_value
            if progress and step % 20 == 0:
                bar.set_postfix(loss=f"{running:.4f}")
        bar.close()
    return model


def recipe_command(name: str, epochs: int, seed: int, batch_size: int, lr: float,
                   schedule: str, folds: int | None, limit: int | None) -> str:
    """The ``spicecross train`` command line that reproduces a run (data root left as DIR)."""
    cmd = (f"spicecross train {name} --data DIR --epochs {epochs} --seed {seed} "
           f"--batch-size {batch_size} --lr {lr:g} --schedule {schedule}")
    cmd += f" --folds {folds}" if folds else ""
    return cmd + (f" --limit {limit}" if limit else "")


def train_model(
    name: str,
    data_root: str | Path | None,
    epochs: int = 2,
    seed: int = 0,
    batch_size: int = 128,
    lr: float = _DEFAULT_LR,
    out_path: str | Path | None = None,
    limit: int | None = None,
    augment: bool | None = None,
    progress: bool = True,
    threads: int | None = None,
    schedule: str = "cosine",
    folds: int | None = None,
) -> dict[str, Any]:
    """Train network ``name`` on its dataset under ``data_root`` and return a summary dict.

    Adam with the learning-rate ``schedule`` from ``lr`` over all steps (module doc; default
    cosine decay to 0), cross-entropy loss, shuffling from a generator seeded with ``seed``.
    ``folds`` = K ≥ 2 first runs K-fold cross-validation on the training split (module doc).
    ``limit`` keeps the first ``limit`` samples of both the train and the test split (for quick
    runs). ``augment`` (random crop + flip) defaults to on for CIFAR and off for MNIST. Shows a
    tqdm bar per epoch when ``progress``. ``threads`` caps torch's intra-op threads (default
    :func:`spicecross.threads.threads_for`: the cores available, never more than the process
    started with).

    If ``out_path`` is given, writes a checkpoint dict there with ``torch.save`` (state dict plus
    model name, seed, epochs, schedule, folds, test accuracy, the reproducing command as
    ``recipe``, ...). Returns ``{"model", "seed", "epochs", "batch_size", "lr", "schedule",
    "optimizer", "folds", "fold_accuracies", "cv_accuracy_mean", "cv_accuracy_std",
    "train_samples", "test_samples", "test_accuracy" (percent), "seconds", "recipe", "out"}``.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise UserError(f"lr must be a finite learning rate > 0, got {lr!r}")
    if schedule not in SCHEDULES:
        raise UserError(f"bad schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")
    if out_path is not None:
        check_output_path(out_path, "checkpoint path")
    threads = threads_for() if threads is None else int(threads)
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    model_name = name.lower()
    build_model(model_name)  # validates the name before any data is read
    train_set = load_dataset(model_name, data_root, train=True, limit=limit)
    test_set = load_dataset(model_name, data_root, train=False, limit=limit)
    n = len(train_set.tensors[1])
    splits = fold_indices(n, folds, seed) if folds is not None else []
    if augment is None:
        augment = model_name != "mnist"

    t0 = time.perf_counter()
    fold_accuracies: list[float] = []
    with limited_threads(threads), _deterministic():
        images, labels = train_set.tensors
        for k, held_out in enumerate(splits):
            keep = torch.cat([s for j, s in enumerate(splits) if j != k])
            fold_model = _fit(model_name, TensorDataset(images[keep], labels[keep]), epochs,
                              seed, batch_size, lr, schedule, augment, progress,
                              f"{model_name} fold {k + 1}/{len(splits)}")
            fold_accuracies.append(evaluate(
                fold_model, TensorDataset(images[held_out], labels[held_out]), threads=threads))
        model = _fit(model_name, train_set, epochs, seed, batch_size, lr, schedule, augment,
                     progress, model_name)
        accuracy = evaluate(model, test_set, threads=threads)
    seconds = time.perf_counter() - t0

    cv = torch.tensor(fold_accuracies, dtype=torch.float64)
    summary: dict[str, Any] = {
        "model": model_name,
        "seed": int(seed),
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "schedule": schedule,
        "optimizer": "adam",
        "folds": int(folds) if folds is not None else None,
        "fold_accuracies": [float(a) for a in fold_accuracies],
        "cv_accuracy_mean": float(cv.mean()) if fold_accuracies else None,
        "cv_accuracy_std": float(cv.std(unbiased=True)) if len(fold_accuracies) > 1 else None,
        "train_samples": int(n),
        "test_samples": int(len(test_set)),
        "test_accuracy": float(accuracy),
        "seconds": float(seconds),
        "recipe": recipe_command(model_name, epochs, seed, batch_size, lr, schedule, folds, limit),
        "out": None,
    }
    bad = [k for k, v in model.state_dict().items() if not torch.isfinite(v).all()]
    if bad:
        raise UserError(f"training diverged: non-finite weights in {bad[0]} (lr {lr:g} too "
                        "large?); no checkpoint written")
    if out_path is not None:
        save_checkpoint(model, summary, out_path, augment=bool(augment), limit=limit)
        summary["out"] = str(out_path)
    return summary


def save_checkpoint(model: nn.Module, summary: dict[str, Any], out_path: str | Path,
                    **extra: Any) -> None:
    """Write ``model``'s state dict with ``summary`` (minus ``out``) and ``extra`` as a
    checkpoint of :data:`CHECKPOINT_FORMAT`, atomically."""
    checkpoint = {k: v for k, v in summary.items() if k not in ("out",)}
    checkpoint.update(format=CHECKPOINT_FORMAT, torch_version=str(torch.__version__), **extra,
                      state_dict={k: v.detach().clone() for k, v in model.state_dict().items()})
    with atomic_path(Path(out_path)) as tmp:
        torch.save(checkpoint, tmp)


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint written by :func:`train_model`: returns ``(model in eval mode, metadata)``.

    ``metadata`` is the checkpoint dict without its ``state_dict``. Raises ``FileNotFoundError``
    for a missing file and ``ValueError`` for a file that is not such a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:   # weights_only: tensors and plain containers only, never code
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError (zip), EOFError, …
        raise unreadable(path, "checkpoint", exc) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "model" not in ckpt:
        raise UserError(f"{path}: not a spicecross checkpoint (needs keys 'model', 'state_dict')")
    model = build_model(ckpt["model"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise unreadable(path, f"{ckpt['model']} checkpoint", exc) from None
    model.eval()
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return model, meta


def pretrained_path(name: str = "mnist") -> Path:
    """Path of the shipped weights for ``name``: ``spicecross/data/<name>_cnn.pt``."""
    return Path(str(resources.files("spicecross") / "data" / f"{name.lower()}_cnn.pt"))


def load_pretrained(name: str = "mnist") -> nn.Module:
    """Return the shipped pretrained network ``name`` in eval mode (only "mnist" is shipped).

    Raises ``ValueError`` for an unknown name and ``FileNotFoundError`` when no weights are
    shipped for it (train them with ``spicecross train <name> ...``).
    """
    build_model(name)  # validates the name
    path = pretrained_path(name)
    if not path.is_file():
        raise FileNotFoundError(
            f"no shipped weights for {name!r} at {path}; train them with "
            f"`spicecross train {name.lower()} --data DIR --out FILE` and use load_checkpoint(FILE)"
        )
    return load_checkpoint(path)[0]
