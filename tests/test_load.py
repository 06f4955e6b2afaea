"""Load injection: burners start and stop, and none outlives its parent however the parent ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from halospec_rl.load import BurnerPool, burners_for_level, pool_for_level

GONE_WITHIN_S = 3.0
REPO_ROOT = Path(__file__).resolve().parents[1]  # so ``python -c`` children import this checkout


def _alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (dead, not yet reaped by init in a container) counts as gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:  # no procfs: fall back to signal 0
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _wait_gone(pids: list[int], timeout: float = GONE_WITHIN_S) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if _alive(pid)]
        if not alive:
            return []
        time.sleep(0.05)
    return [pid for pid in pids if _alive(pid)]


def _spawn_parent(body: str) -> tuple[subprocess.Popen, list[int]]:
    """A Python parent that starts 2 burners, prints their pids as JSON, then runs ``body``."""
    code = (
        "import json, sys, time\n"
        "from halospec_rl.load import BurnerPool\n"
        "pool = BurnerPool(2)\n"
        "pool.start()\n"
        "print(json.dumps(pool.pids), flush=True)\n" + body
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT
    )
    pids = json.loads(parent.stdout.readline())
    assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    return parent, pids


def test_pool_start_stop_and_context_manager_on_exception():
    pool = BurnerPool(2)
    pool.start()
    pids = pool.pids
    assert pool.running and all(_alive(pid) for pid in pids)
    pool.stop()
    assert not pool.running and _wait_gone(pids) == []

    with pytest.raises(RuntimeError), BurnerPool(1) as pool:
        pids = pool.pids
        raise RuntimeError("boom")
    assert _wait_gone(pids) == []


def test_burners_die_with_sigkilled_parent():
    parent, pids = _spawn_parent("time.sleep(60)\n")
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert _wait_gone(pids) == []


def test_burners_stopped_on_ctrl_c_and_normal_exit():
    # Ctrl-C: KeyboardInterrupt unwinds the parent; atexit stops the pool it never stopped itself.
    parent, pids = _spawn_parent("time.sleep(60)\n")
    parent.send_signal(signal.SIGINT)
    parent.wait(timeout=10)
    assert _wait_gone(pids) == []

    parent, pids = _spawn_parent("sys.stdin.readline()\nsys.exit(0)\n")  # exit once told to
    parent.communicate("go\n", timeout=10)
    assert parent.returncode == 0
    assert _wait_gone(pids) == []


def test_levels_and_pool_resizing():
    assert [burners_for_level(x, 2) for x in (0.0, 0.3, 1.0)] == [0, 1, 2]
    with pytest.raises(ValueError, match="1.5"):
        burners_for_level(1.5, 2)
    with pytest.raises(ValueError, match="-1"):
        BurnerPool(-1)
    pool = pool_for_level(BurnerPool(0), 1.0, 2)
    try:
        assert pool.running and len(pool.pids) == 2
        assert pool_for_level(pool, 0.6, 2) is pool  # ceil(0.6 * 2) = 2: keep the running pool
        pids = pool.pids
        stopped = pool_for_level(pool, 0.0, 2)
        assert not stopped.running and not pool.running and _wait_gone(pids) == []
    finally:
        pool.stop()
