"""``spicecross verify-network``: a whole network with every array read in SPICE beside its
surrogate; also the SPICE-loop options and output shared with ``spicecross infer --spice-loop``.

The SPICE loop is a switch of its own rather than a fourth ``--mode``: ``--mode`` names the
surrogate (ideal/linear/nonlinear) that calibrates the converters and that SPICE is compared
with, and it stays meaningful (and required) while SPICE is in the loop.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings

from .args import integer, positive_int


def add_spice_loop_options(p: argparse.ArgumentParser, out_default: str) -> None:
    """Where and how the SPICE loop solves (the simulator is ``--spice-backend``)."""
    from ..spice.cluster import PARALLEL_BACKENDS

    p.add_argument("--spice-out", default=out_default, metavar="FILE",
                   help=f"HDF5 of per-image SPICE and surrogate logits and per-layer read errors; "
                        f"an existing file of the same run is resumed (default {out_default})")
    p.add_argument("--spice-batch", type=positive_int, default="4", metavar="N",
                   help="test images per SPICE batch, one HDF5 append each (default 4)")
    p.add_argument("--jobs", type=integer(1), default=None, metavar="N",
                   help="parallel simulator runs (default: cores)")
    p.add_argument("--backend", choices=PARALLEL_BACKENDS, default="loky",
                   help="joblib backend of the simulator runs (default loky; dask with "
                        "--scheduler runs on a cluster)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="running dask scheduler (e.g. tcp://10.0.0.5:8786) or ray address")
    p.add_argument("--no-cache", action="store_true",
                   help="always run the simulator (default: content-hash cache of every chunk)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--superpose-linear", action="store_true",
                   help="0T1R arrays read with more distinct vectors than rows: SPICE solves the "
                        "array's unit input vectors once and every read follows by superposition "
                        "(exact for linear arrays, ≤ 1e-9 of one .op per read); off: every read is "
                        "its own SPICE operating point")


def run_spice_loop_from_args(args: argparse.Namespace) -> dict:
    """Run :func:`~spicecross.nn.spice_verify.verify_network` as the options describe;
    warnings of the run are printed once each on stderr."""
    from ..nn.spice_loop import SpiceLoopSettings
    from ..nn.spice_verify import verify_network
    from .infer import config_from_args

    config = config_from_args(args)
    settings = SpiceLoopSettings(simulator=args.spice_backend, n_jobs=args.jobs,
                                 parallel_backend=args.backend, scheduler=args.scheduler,
                                 cache_dir=None if args.no_cache else "default",
                                 progress=not args.quiet,
                                 superpose_linear=args.superpose_linear)
    log = None if args.quiet else (lambda m: print(f"  {m}", file=sys.stderr, flush=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        res = verify_network(args.model, args.data, config, args.spice_out, limit=args.limit,
                             weights=args.weights, settings=settings,
                             batch_images=args.spice_batch, log=log)
    for w in sorted({str(w.message) for w in caught}):
        print(f"spicecross {args.command}: warning: {w}", file=sys.stderr)
    res["superpose_linear"] = bool(args.superpose_linear)
    return res


def json_report(res: dict) -> dict:
    keys = ("images", "accuracy_spice", "accuracy_surrogate", "accuracy_digital",
            "class_differs_share", "max_logit_abs_diff", "max_logit_rel_diff", "max_err_lsb",
            "seconds_per_image", "seconds", "program_seconds", "simulator", "tiles",
            "read_voltage_v", "read_scheme", "out", "superpose_linear")
    return {**{k: res.get(k) for k in keys}, "per_layer": res["per_layer"]}


def print_report(res: dict, config_line: str) -> None:
    dig = res.get("accuracy_digital")
    print(f"{res['model']}: {res['images']} images ({res['data']})")
    if dig is not None:
        print(f"  digital     {dig:.2f} %")
    print(f"  surrogate   {res['accuracy_surrogate']:.2f} %  ({config_line})")
    how = ("linear arrays by superposition of unit-vector solves"
           if res.get("superpose_linear") else "every read")
    print(f"  SPICE       {res['accuracy_spice']:.2f} %  ({res['simulator']}, {how}; "
          f"{res['seconds_per_image']:.1f} s per image, results in {res['out']})")
    print(f"  class differs on {100 * res['class_differs_share']:.2f} % of images; largest logit "
          f"difference {res['max_logit_abs_diff']:.3g} (relative {res['max_logit_rel_diff']:.3g})")
    for p in res["per_layer"]:
        print(f"    {p['layer']:<16} {p['array_reads']:>8} array reads  max {p['max_err_lsb']:.3g} "
              f"ADC steps  rms {p['rms_err_lsb']:.3g}  codes differ "
              f"{100 * p['code_mismatch_share']:.3g} %  ({', '.join(p['simulators'])})")


def config_line(res: dict) -> str:
    cfg = res["config"]
    tile = cfg.get("tile", {})
    return (f"{tile.get('rows')}x{tile.get('cols')} {tile.get('cell')}, {cfg.get('mode')} mode, "
            f"{res['tiles']} arrays, reads at {res['read_voltage_v']:g} V {res['read_scheme']}")


def _cmd_verify(args: argparse.Namespace) -> int:
    from ..nn.spice_loop_store import load_results
    from ..nn.spice_verify import plot_layer_errors

    res = run_spice_loop_from_args(args)
    if args.plot:
        plot_layer_errors(load_results(args.spice_out), args.plot)
    if args.json:
        print(json.dumps({**json_report(res), "plot": args.plot}))
    else:
        print_report(res, config_line(res))
        if args.plot:
            print(f"  per-layer error distribution: {args.plot}")
    sys.stdout.flush()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from .infer import add_config_options

    p = sub.add_parser(
        "verify-network", help="a whole network with every read in SPICE vs its surrogate",
        description="Patch and calibrate a network as `spicecross infer` does, then run the "
                    "first --limit test images with every array read solved in SPICE (VACASK "
                    "by default; resumable HDF5) and through the surrogate; report both "
                    "accuracies, the share of images whose class differs, the largest logit "
                    "difference and per layer the read current error in ADC steps.")
    add_config_options(p)
    add_spice_loop_options(p, "verify_network.h5")
    p.add_argument("--plot", default="verify_network.png", metavar="PNG",
                   help="per-layer error distribution (default verify_network.png; '' for none)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_verify, limit=8)
