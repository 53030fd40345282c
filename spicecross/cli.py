"""``spicecross <command>``: the one entry point.

Each command lives in the module that owns its work and registers itself through a
``register(subparsers)`` function; this file only collects them and turns expected errors
(bad values, missing simulators) into one-line messages instead of tracebacks.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Modules that define ``register(subparsers)``; each adds one or more subcommands.
COMMAND_MODULES = [
    "spicecross.circuit.commands",
    "spicecross.spice.commands",
    "spicecross.surrogate.commands",
    "spicecross.calibration.commands",
    "spicecross.golden_commands",
    "spicecross.demo",
    "spicecross.nn.commands",
    "spicecross.devices.commands",
    "spicecross.nn.infer_commands",
    "spicecross.experiments.commands",
]


class UserError(Exception):
    """An error caused by the user's input or environment: printed as one line, exit 2."""


def _expected_runtime_errors() -> tuple[type[Exception], ...]:
    """Failures of the outside world (simulator missing or failing, no convergence): one line."""
    from .spice.simulators import SimulationError, SimulatorMissing
    from .surrogate.tile_model import ConvergenceError

    return (SimulationError, SimulatorMissing, ConvergenceError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spicecross", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UserError, ValueError, FileNotFoundError, *_expected_runtime_errors()) as exc:
        print(f"spicecross {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"spicecross {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
