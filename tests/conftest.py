import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session solves into its own cache, so cache hits are only the ones a test makes."""
    cache = tmp_path_factory.getbasetemp() / "solve-cache"
    monkeypatch.setenv("SPICECROSS_CACHE", str(cache))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    yield
