"""Where built models live on disk: a user cache directory, overridable with ``HALOSPEC_CACHE_DIR``."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Iterator
from pathlib import Path

CACHE_ENV = "HALOSPEC_CACHE_DIR"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir`` if given, else ``$HALOSPEC_CACHE_DIR``, else ``$XDG_CACHE_HOME/halospec-rl``
    (``~/.cache/halospec-rl`` by default; ``~/Library/Caches/halospec-rl`` on macOS)."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "halospec-rl"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "halospec-rl"


@contextlib.contextmanager
def build_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` so two processes never build the same models at once
    (the second waits, then finds the models built)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a killed build never leaves a half-written file."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
