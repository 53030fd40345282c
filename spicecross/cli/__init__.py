"""``spicecross <command>``: the one entry point.

The command table :data:`COMMAND_MODULES` lists one small module per command group; each has a
``register(subparsers)`` that adds its subcommands with thin handlers. Building the parser (and
``--help``) imports only these modules and torch-free constants; a handler imports the library
code it calls when it runs. Option values are converted and range-checked by the ``type=``
helpers in :mod:`spicecross.cli.args`; everything else is left to the library's own validation.

Exit status (every command): 0 success; 1 the command ran but recorded failures (``solve``:
netlists the simulator could not solve, ``golden check``: cases that differ; the count is
printed); 2 a usage error: a bad option value, a missing, unreadable or corrupt input file, an
output path that cannot be written, an untrusted netlist, a missing simulator, no convergence.
A usage error is one line ``spicecross <command>: error: ...`` (:class:`spicecross.errors.
UserError`, OSError, ValueError, MemoryError), never a traceback; 130 after Ctrl-C.

To add a command: write ``spicecross/cli/<group>.py`` with ``register(sub)`` calling
``sub.add_parser(...)`` and ``p.set_defaults(func=handler)`` (library imports inside the
handler), and add ``"<group>"`` to :data:`COMMAND_MODULES`.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import UserError
from .args import ArgumentParser, UsageError

# Command groups (modules of this package) in the order ``spicecross --help`` lists them.
COMMAND_MODULES = (
    "circuit",      # netlist
    "spice",        # solve
    "surrogate",    # surrogate
    "calibration",  # calibrate
    "golden",       # golden check|update
    "demo",         # demo
    "train",        # train
    "devices",      # device iv
    "infer",        # infer
    "sweep",        # sweep
    "verify",       # verify-network
    "program",      # program
)

#: Each command → the module of :data:`COMMAND_MODULES` that registers it. ``spicecross
#: <command> …`` builds only that module's parser, so a command's start-up does not pay for
#: the others' imports (tests/test_solve_startup.py keeps this table equal to what the modules
#: register).
COMMANDS = {
    "netlist": "circuit", "solve": "spice", "surrogate": "surrogate",
    "calibrate": "calibration", "golden": "golden", "demo": "demo", "train": "train",
    "device": "devices", "infer": "infer", "sweep": "sweep", "verify-network": "verify",
    "program": "program",
}

__all__ = ["COMMANDS", "COMMAND_MODULES", "UserError", "build_parser", "main"]


# Failures of the outside world (simulator missing or failing, no convergence): one line too.
_RUNTIME_ERRORS = (("spicecross.spice.simulators", ("SimulationError",)),
                   ("spicecross.spice.executables", ("SimulatorMissing",)),
                   ("spicecross.surrogate.tile_model", ("ConvergenceError",)))


def _expected_runtime_errors() -> tuple[type[Exception], ...]:
    # Only modules already imported can have raised their errors; looking them up in
    # sys.modules keeps an error path from importing torch.
    found = []
    for module, names in _RUNTIME_ERRORS:
        mod = sys.modules.get(module)
        if mod is not None:
            found += [getattr(mod, n) for n in names]
    return tuple(found)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``spicecross`` parser: every command, or only ``command``'s module when it names
    one of :data:`COMMANDS`."""
    parser = ArgumentParser(prog="spicecross", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    sub.required = True
    modules = (COMMANDS[command],) if command in COMMANDS else COMMAND_MODULES
    for name in modules:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) or exc.__class__.__name__
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    """Run ``spicecross`` with ``argv`` (default: this process's arguments) and return its exit
    status. Called without ``argv`` (the console script, ``python -m spicecross.cli``) it
    ends the process's garbage collection (:func:`gc.freeze`) before returning: the process
    is about to exit, and the interpreter's last collections over every imported module
    added 15–30 ms to ``spicecross solve`` (2-core machine, under load)."""
    if argv is not None:
        return _main(list(argv))
    try:
        return _main(sys.argv[1:])
    finally:
        import gc

        gc.freeze()


def _main(argv: list[str]) -> int:
    parser = build_parser(argv[0] if argv else None)
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(f"{exc.prog}: error: {exc}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except (UserError, ValueError, OSError, *_expected_runtime_errors()) as exc:
        print(f"spicecross {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"spicecross {args.command}: error: out of memory; use smaller sizes",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"spicecross {args.command}: interrupted", file=sys.stderr)
        return 130
