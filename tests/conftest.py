"""Fixtures shared by the test files."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny decoder models, built once per test session (seconds) into the session temp dir."""
    from halospec_rl.decoder.train import build

    cache = tmp_path_factory.getbasetemp() / "halospec-tiny-cache"
    build("tiny", cache, progress=False)
    return cache
