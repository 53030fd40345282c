"""The one error type for mistakes the user can fix.

:class:`UserError` is raised by library code for bad input values, unreadable or corrupt input
files, output paths that cannot be written and untrusted netlists; ``spicecross.cli.main`` prints
it as one line ``spicecross <command>: error: ...`` with exit status 2. It subclasses
``ValueError`` so callers that already catch ``ValueError`` keep working.
"""
from __future__ import annotations

__all__ = ["UserError"]


class UserError(ValueError):
    """An error caused by the user's input or environment: printed as one line, exit 2."""


def unreadable(path: object, what: str, exc: BaseException) -> UserError:
    """The UserError for an input file that exists but cannot be read as ``what`` (corrupt,
    truncated, the wrong format, missing keys): names the file and the reader's complaint."""
    detail = str(exc).strip() or exc.__class__.__name__
    if isinstance(exc, KeyError):
        detail = f"missing key {exc}"
    return UserError(f"{what} {str(path)!r} is not readable: {detail}")
