"""Tile sizes and their text form ``ROWSxCOLS`` (torch-free, shared by the CLI and
:mod:`spicecross.nn.analog`)."""
from __future__ import annotations

__all__ = ["TILE_PRESETS", "parse_tile"]

#: Tile sizes of the seed paper's experiments.
TILE_PRESETS: dict[str, tuple[int, int]] = {"64x64": (64, 64), "128x128": (128, 128),
                                            "256x256": (256, 256)}


def parse_tile(text: str) -> tuple[int, int]:
    """``"64x64"`` → (64, 64); ValueError naming the bad value otherwise."""
    parts = str(text).lower().split("x")
    try:
        if len(parts) != 2:
            raise ValueError
        rows, cols = int(parts[0]), int(parts[1])
    except ValueError:
        raise ValueError(f"bad tile size {text!r}: expected ROWSxCOLS, e.g. 64x64") from None
    if rows < 1 or cols < 1:
        raise ValueError(f"bad tile size {text!r}: rows and cols must be ≥ 1")
    return rows, cols
