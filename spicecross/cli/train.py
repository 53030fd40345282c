"""``spicecross train``: train one of the seed paper's CNNs."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any

from ..errors import UserError
from ..nn.datasets import DATA_ENV_VAR
from ..nn.model_names import MODEL_NAMES
from .args import existing_file, finite_float, integer, positive_int, tile_size


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
    if args.analog or args.analog_config is not None:
        if args.folds is not None or args.schedule != "cosine":
            raise UserError("--folds and --schedule apply to digital training; --analog "
                            "fine-tunes with a cosine decay")
        return _cmd_train_analog(args, data, kwargs)
    summary = train_model(args.model, data, epochs=args.epochs, seed=args.seed,
                          batch_size=args.batch_size, out_path=args.out, limit=args.limit,
                          progress=not args.quiet, schedule=args.schedule, folds=args.folds,
                          **kwargs)
    print(json.dumps({
        "model": summary["model"],
        "test_accuracy": round(summary["test_accuracy"], 4),
        "seconds": round(summary["seconds"], 2),
        "epochs": summary["epochs"],
        "seed": summary["seed"],
        "schedule": summary["schedule"],
        "folds": summary["folds"],
        "fold_accuracies": [round(a, 4) for a in summary["fold_accuracies"]],
        "train_samples": summary["train_samples"],
        "test_samples": summary["test_samples"],
        "recipe": summary["recipe"],
        "out": summary["out"],
    }))
    sys.stdout.flush()
    return 0


def _analog_config(args: argparse.Namespace):
    """The AnalogConfig of ``--analog-config FILE`` (JSON of ``AnalogConfig.to_dict``) with the
    flags given beside it applied on top."""
    from ..errors import unreadable
    from ..surrogate.config import AnalogConfig

    config = AnalogConfig()
    if args.analog_config is not None:
        try:
            with open(args.analog_config, encoding="utf-8") as f:
                config = AnalogConfig.from_dict(json.load(f))
        except (OSError, ValueError, TypeError) as exc:
            raise unreadable(args.analog_config, "analog configuration", exc) from None
    changes: dict[str, Any] = {}
    if args.tile is not None:
        changes.update(tile_rows=args.tile[0], tile_cols=args.tile[1])
    if args.r_wire is not None:
        changes["r_wire_ohm"] = args.r_wire
    if args.sigma is not None:
        changes.update(sigma_r_on_ohm=args.sigma, sigma_r_off_ohm=args.sigma)
    if args.adc_bits is not None:
        changes["adc_bits"] = args.adc_bits
    if args.compat is not None:
        changes["compat"] = args.compat
    return config.with_(**changes) if changes else config


def _analog_recipe(args: argparse.Namespace) -> str:
    """The ``spicecross train --analog`` command line of ``args`` (data root left as DIR;
    every training setting spelled out, defaults included), for the checkpoint's metadata."""
    words = ["spicecross", "train", args.model, "--data", "DIR", "--analog"]
    if args.analog_config is not None:
        words += ["--analog-config", str(args.analog_config)]
    if args.init is not None:
        words += ["--init", str(args.init)]
    optional = {"--tile": None if args.tile is None else f"{args.tile[0]}x{args.tile[1]}",
                "--r-wire": args.r_wire, "--sigma": args.sigma, "--adc-bits": args.adc_bits,
                "--compat": args.compat, "--lr": args.lr, "--limit": args.limit,
                "--max-steps": args.max_steps}
    words += [w for k, v in optional.items() if v is not None for w in (k, f"{v:g}"
              if isinstance(v, float) else str(v))]
    words += ["--epochs", str(args.epochs), "--seed", str(args.seed), "--batch-size",
              str(args.batch_size), "--reprogram-every", str(args.reprogram_every),
              "--bn-batches", str(args.bn_batches), "--bn-mode", args.bn_mode]
    words += ["--bn-on-chip"] if args.bn_on_chip else []
    words += ["--out", str(args.out)]
    return shlex.join(words)


def _cmd_train_analog(args: argparse.Namespace, data: str, kwargs: dict[str, Any]) -> int:
    from ..nn.hw_train import train_analog

    if args.bn_batches is None:
        args.bn_batches = 20 if args.bn_mode == "batch" else 0

    summary = train_analog(args.model, data, _analog_config(args), out_path=args.out,
                           init=args.init, epochs=args.epochs, batch_size=args.batch_size,
                           reprogram_every=args.reprogram_every, max_steps=args.max_steps,
                           seed=args.seed, limit=args.limit, eval_limit=args.eval_limit,
                           progress=not args.quiet, bn_batches=args.bn_batches,
                           bn_mode=args.bn_mode, bn_on_chip=args.bn_on_chip,
                           skip_before=args.skip_before,
                           recipe=_analog_recipe(args), **kwargs)
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                      for k, v in summary.items()}))
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
    p.add_argument("--epochs", type=positive_int, default=2,
                   help="training epochs (default 2; with --analog at most this many)")
    p.add_argument("--seed", type=integer(), default=0, help="random seed (default 0)")
    p.add_argument("--batch-size", type=positive_int, default=128, help="batch size (default 128)")
    p.add_argument("--lr", type=finite_float(0.0, 10.0, lo_open=True), default=None,
                   help="Adam learning rate (default 2e-3; 5e-4 with --analog)")
    p.add_argument("--schedule", default="cosine", metavar="cosine|constant|step",
                   help="learning-rate schedule over all steps: cosine decay to 0 (default), "
                        "constant, or step (x0.1 at 1/2 and 3/4 of the steps)")
    p.add_argument("--folds", type=integer(2, 1000, none_ok=True), default=None, metavar="K",
                   help="K-fold cross-validation on the training split first (the seed paper's "
                        "assessment): K networks, each scored on its held-out fold; the saved "
                        "network is trained on the whole split")
    p.add_argument("--out", required=True, metavar="FILE", help="checkpoint file to write (.pt)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="use only the first N train and N test samples (quick runs)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    hw = p.add_argument_group("hardware-aware training (through the crossbar surrogate)")
    hw.add_argument("--analog", action="store_true",
                    help="fine-tune through the analog forward path (wires, ADC, variability "
                         "re-drawn at every programming; straight-through gradients)")
    hw.add_argument("--analog-config", type=existing_file, default=None, metavar="FILE",
                    help="JSON AnalogConfig (implies --analog); the flags below override it")
    hw.add_argument("--init", type=existing_file, default=None, metavar="FILE",
                    help="checkpoint to start from (default: the shipped MNIST weights)")
    hw.add_argument("--tile", type=tile_size, default=None, metavar="RxC", help="tile rows x cols")
    hw.add_argument("--r-wire", type=finite_float(0.0), default=None, metavar="OHMS",
                    help="wire segment resistance")
    hw.add_argument("--sigma", type=finite_float(0.0), default=None, metavar="OHMS",
                    help="device-to-device σ of R_on and R_off")
    hw.add_argument("--adc-bits", type=integer(1, 32, none_ok=True), default=None, metavar="N",
                    help="ADC bits, or 'none'")
    hw.add_argument("--compat", default=None, choices=("physical", "memtorch"),
                    help="read path to train through (default physical)")
    hw.add_argument("--reprogram-every", type=positive_int, default=20, metavar="N",
                    help="program the current weights (fresh device draw) every N batches "
                         "(default 20)")
    hw.add_argument("--max-steps", type=positive_int, default=None, metavar="N",
                    help="stop after N batches")
    hw.add_argument("--bn-batches", type=integer(0), default=None, metavar="N",
                    help="re-estimate BatchNorm statistics on N batches through the analog path "
                         "after training (default 20 with --bn-mode batch, 0 with frozen; 0 "
                         "keeps the running statistics)")
    hw.add_argument("--bn-on-chip", action="store_true",
                    help="measure the BatchNorm statistics (--bn-batches of training images) on "
                         "the evaluation chip itself after programming it, as a chip is "
                         "calibrated; the accuracy on another, uncalibrated draw is printed too")
    hw.add_argument("--skip-before", action="store_true",
                    help="do not measure the analog accuracy before training (saves one "
                         "evaluation)")
    hw.add_argument("--bn-mode", default="batch", choices=("batch", "frozen"),
                    help="BatchNorm during training: batch statistics (default) or frozen "
                         "running statistics as at inference (what variability needs)")
    hw.add_argument("--eval-limit", type=positive_int, default=None, metavar="N",
                    help="test images for the before/after analog accuracy (default all)")
    p.set_defaults(func=_cmd_train)
