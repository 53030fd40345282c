"""CLI subcommands of ``spicecross.nn``: ``spicecross train``."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from spicecross.nn.datasets import DATA_ENV_VAR, default_data_root
from spicecross.nn.models import MODEL_NAMES


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def register(subparsers: Any) -> None:
    """Add the ``train`` subcommand to ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    p = subparsers.add_parser(
        "train",
        help="train one of the seed paper's CNNs (mnist, cifar10, cifar100)",
        description="Train one of the seed paper's CNNs on data in torchvision's on-disk layout "
                    "and save a checkpoint; prints a JSON summary line at the end.",
    )
    p.add_argument("model", choices=MODEL_NAMES, help="network and dataset")
    p.add_argument("--data", default=None, metavar="DIR",
                   help=f"data root holding MNIST/raw, cifar-10-batches-py or cifar-100-python "
                        f"(default: ${DATA_ENV_VAR})")
    p.add_argument("--epochs", type=_positive_int, default=2, help="training epochs (default 2)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--batch-size", type=_positive_int, default=128, help="batch size (default 128)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 2e-3)")
    p.add_argument("--out", required=True, metavar="FILE", help="checkpoint file to write (.pt)")
    p.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                   help="use only the first N train and N test samples (quick runs)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    """Run ``spicecross train``; returns the exit code."""
    from spicecross.nn.train import train_model  # torch import deferred until needed

    data = args.data if args.data is not None else default_data_root()
    if data is None:
        raise FileNotFoundError(f"no data directory: pass --data DIR or set ${DATA_ENV_VAR}")
    kwargs: dict[str, Any] = {}
    if args.lr is not None:
        kwargs["lr"] = args.lr
    summary = train_model(args.model, data, epochs=args.epochs, seed=args.seed,
                          batch_size=args.batch_size, out_path=args.out, limit=args.limit,
                          progress=not args.quiet, **kwargs)
    print(json.dumps({
        "model": summary["model"],
        "test_accuracy": round(summary["test_accuracy"], 4),
        "seconds": round(summary["seconds"], 2),
        "epochs": summary["epochs"],
        "seed": summary["seed"],
        "train_samples": summary["train_samples"],
        "test_samples": summary["test_samples"],
        "out": summary["out"],
    }))
    sys.stdout.flush()
    return 0
