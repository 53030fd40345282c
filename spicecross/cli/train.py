"""``spicecross train``: train one of the seed paper's CNNs."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..nn.datasets import DATA_ENV_VAR
from ..nn.model_names import MODEL_NAMES
from .args import finite_float, integer, positive_int


def _cmd_train(args: argparse.Namespace) -> int:
    from ..nn.datasets import default_data_root
    from ..nn.train import train_model
    from ..store import check_output_path

    check_output_path(args.out, "--out")

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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train one of the seed paper's CNNs (mnist, cifar10, cifar100)",
        description="Train one of the seed paper's CNNs on data in torchvision's on-disk layout "
                    "and save a checkpoint; prints a JSON summary line at the end.",
    )
    p.add_argument("model", choices=MODEL_NAMES, help="network and dataset")
    p.add_argument("--data", default=None, metavar="DIR",
                   help=f"data root holding MNIST/raw, cifar-10-batches-py or cifar-100-python "
                        f"(default: ${DATA_ENV_VAR})")
    p.add_argument("--epochs", type=positive_int, default=2, help="training epochs (default 2)")
    p.add_argument("--seed", type=integer(), default=0, help="random seed (default 0)")
    p.add_argument("--batch-size", type=positive_int, default=128, help="batch size (default 128)")
    p.add_argument("--lr", type=finite_float(0.0, 10.0, lo_open=True), default=None,
                   help="Adam learning rate (default 2e-3)")
    p.add_argument("--out", required=True, metavar="FILE", help="checkpoint file to write (.pt)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="use only the first N train and N test samples (quick runs)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train)
