"""The CLI's one style of argument checking: ``type=`` helpers that convert an option's text and
check its range, and a parser whose errors are one line.

A helper's message starts with the offending text (``'0': must be in 1..32``); the parser turns
``argument --adc-bits: '0': ...`` into ``bad --adc-bits '0': ...``. Anything that needs more
than one option (or a file's contents) is checked by the library's own config classes.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["ArgumentParser", "UsageError", "finite_float", "integer", "positive_int",
           "existing_file", "tile_size", "comma_list"]


class UsageError(Exception):
    """A command line argparse rejected; ``prog`` names the (sub)command."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


_TYPE_ERROR = re.compile(r"^argument (\S+): ('.*)$", re.S)


class ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser that raises :class:`UsageError` instead of printing usage and exiting,
    so ``main`` reports every user error as one line with exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        m = _TYPE_ERROR.match(message)
        raise UsageError(self.prog, f"bad {m.group(1)} {m.group(2)}" if m else message)

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse's own makes every formatter import shutil (with zlib, bz2 and lzma, ~3 ms of
        # a command's start) for the terminal width; this is the same width
        return self.formatter_class(prog=self.prog, width=_terminal_columns() - 2)


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns`` (``$COLUMNS``, the terminal's, else 80), without
    importing shutil."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


def _named(fn: Callable, name: str) -> Callable:
    fn.__name__ = name      # argparse names the type in some of its own messages
    return fn


def finite_float(lo: float | None = None, hi: float | None = None,
                 lo_open: bool = False) -> Callable[[str], float]:
    """A finite float in [lo, hi] (``(lo, hi]`` with ``lo_open``)."""
    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r}: must be finite")
        if lo is not None and (value < lo or (lo_open and value == lo)):
            raise argparse.ArgumentTypeError(f"{text!r}: must be {'>' if lo_open else '≥'} {lo:g}")
        if hi is not None and value > hi:
            raise argparse.ArgumentTypeError(f"{text!r}: must be ≤ {hi:g}")
        return value
    return _named(convert, "number")


def integer(lo: int | None = None, hi: int | None = None,
            none_ok: bool = False) -> Callable[[str], int | None]:
    """An integer in [lo, hi]; with ``none_ok`` the word ``none`` gives None."""
    def convert(text: str) -> int | None:
        if none_ok and str(text).lower() == "none":
            return None
        try:
            value = int(str(text))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected an integer") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            rng = f"{lo}..{hi}" if hi is not None else f"≥ {lo}"
            raise argparse.ArgumentTypeError(f"{text!r}: must be in {rng}")
        return value
    return _named(convert, "integer")


positive_int = integer(1)


def existing_file(text: str) -> str:
    """The path of an existing, readable file (kept as the text given)."""
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text!r}: file not found")
    if not os.access(text, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text!r}: file not readable")
    return text


def tile_size(text: str) -> tuple[int, int]:
    """``ROWSxCOLS`` → (rows, cols), at most :func:`~spicecross.circuit.tile.max_tile_cells`."""
    from ..circuit.tile import check_tile_size
    from ..nn.tiles import parse_tile

    try:
        rows, cols = parse_tile(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected ROWSxCOLS with positive integers, "
                                         "e.g. 64x64") from None
    try:
        return check_tile_size(rows, cols)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def comma_list(choices: Sequence[str], what: str = "item") -> Callable[[str], list[str]]:
    """A comma-separated, non-empty subset of ``choices`` (order kept, duplicates dropped)."""
    def convert(text: str) -> list[str]:
        items = [f.strip().lower() for f in text.split(",") if f.strip()]
        bad = [f for f in items if f not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"{text!r}: unknown {what}(s) {', '.join(bad) or '(none)'}; "
                                             f"choose from {','.join(choices)}")
        return list(dict.fromkeys(items))
    return _named(convert, "list")
