"""CPU contention injection for real backends (HaloSpec's ``HALOSPEC_LOAD``).

:class:`BurnerPool` runs N child processes that spin on the CPU. No burner outlives its run:

- normal exit and exceptions: :meth:`BurnerPool.stop` from the context manager, and an ``atexit``
  hook that stops every pool still running;
- Ctrl-C: burners ignore SIGINT (so a parent that handles it keeps control) and are stopped by the
  parent's cleanup above, or by the next point if the parent dies of it;
- a killed parent (even SIGKILL): on Linux each burner asks the kernel for SIGKILL when its parent
  dies (``prctl(PR_SET_PDEATHSIG)``); everywhere it also polls its parent pid about 20 times a second.

When the load is on is the scenario's business (``halospec_rl.scenarios``: ``HALOSPEC_LOAD=1``
selects ``load_spike``, HaloSpec's spike from measured step 6); backends apply the level they are
given with :func:`pool_for_level`.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import subprocess
import sys
import weakref

LOAD_ENV = "HALOSPEC_LOAD"
# One burner per core plus one: with a 1-thread decoder that is cores + 2 runnable processes on
# ``cores`` cores, so the decoder gets about cores / (cores + 2) of a core (half on 2 cores: ~2x latency).
DEFAULT_BURNERS = (os.cpu_count() or 2) + 1

# Run with ``python -c`` (no project import, so it starts in ~20 ms). argv[1] = parent pid.
_BURNER_CODE = r"""
import os, signal, sys, time
parent = int(sys.argv[1])
signal.signal(signal.SIGINT, signal.SIG_IGN)
if sys.platform.startswith("linux"):
    import ctypes
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
next_check = 0.0
while True:
    for _ in range(20000):
        pass
    now = time.monotonic()
    if now >= next_check:
        if os.getppid() != parent:  # re-parented: our parent is gone (also covers dying before prctl)
            os._exit(0)
        next_check = now + 0.05
"""

_LIVE_POOLS: weakref.WeakSet[BurnerPool] = weakref.WeakSet()


class BurnerPool:
    """``processes`` CPU-spinning child processes; ``start()``/``stop()`` or ``with BurnerPool(n):``.

    Start it from a long-lived thread (normally the main one): Linux delivers the parent-death
    signal when the *thread* that spawned a burner exits, not only when the process does.
    """

    def __init__(self, processes: int = DEFAULT_BURNERS):
        self._children: list[subprocess.Popen] = []  # first, so __del__ works even if validation fails
        if processes < 0:
            raise ValueError(f"processes must be >= 0, got {processes}")
        self.processes = processes

    @property
    def running(self) -> bool:
        return bool(self._children)

    @property
    def pids(self) -> list[int]:
        return [child.pid for child in self._children]

    def start(self) -> None:
        """Start the burners (no-op if already running)."""
        if self._children:
            return
        _LIVE_POOLS.add(self)
        try:
            for _ in range(self.processes):
                self._children.append(
                    subprocess.Popen(
                        [sys.executable, "-c", _BURNER_CODE, str(os.getpid())],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Kill and reap every burner (idempotent)."""
        children, self._children = self._children, []
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
        for child in children:
            child.wait()

    def __enter__(self) -> BurnerPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        self.stop()


@atexit.register
def _stop_all_pools() -> None:
    for pool in list(_LIVE_POOLS):
        pool.stop()


def burners_for_level(level: float, max_processes: int) -> int:
    """Burner count for a contention level in 0..1: ``ceil(level * max_processes)``."""
    if not 0.0 <= level <= 1.0:
        raise ValueError(f"load level must be in 0..1, got {level}")
    return math.ceil(level * max_processes)


def pool_for_level(pool: BurnerPool, level: float, max_processes: int) -> BurnerPool:
    """The burner pool to run at contention ``level``: ``pool`` itself when it already runs
    ``burners_for_level(level, max_processes)`` burners, else a started replacement (``pool`` stopped)."""
    wanted = burners_for_level(level, max_processes)
    if wanted == len(pool.pids):
        return pool
    pool.stop()
    replacement = BurnerPool(wanted)
    replacement.start()
    return replacement


__all__ = ["DEFAULT_BURNERS", "LOAD_ENV", "BurnerPool", "burners_for_level", "pool_for_level"]
