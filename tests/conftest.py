"""Shared test configuration: the ``backend`` marker and small synchronisation helpers.

``@pytest.mark.backend("redis")`` marks a test that needs a real server. It is skipped,
with the reason, when the server does not answer; with ``DISTSYS_REQUIRE_BACKENDS=1`` (as
CI sets it) an unreachable server fails the test instead.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from distsys import _pure

# Fixtures shared by the test modules of several packages.
pytest_plugins = ["tests.redis_keys"]

BACKENDS: dict[str, tuple[str, int]] = {
    "redis": (os.environ.get("DISTSYS_REDIS_HOST", "127.0.0.1"), 6379),
    "nats": (os.environ.get("DISTSYS_NATS_HOST", "127.0.0.1"), 4222),
    "etcd": (os.environ.get("DISTSYS_ETCD_HOST", "127.0.0.1"), 2379),
}


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to test a compiled module older than its source (``make`` rebuilds it)."""
    if _pure.requested():
        return
    src = Path(_pure.__file__).parent.parent
    for name in sorted(_pure.compiled_names()):
        source = src / (name.replace(".", "/") + ".py")
        built = list(source.parent.glob(source.stem + ".*.so"))
        if built and max(b.stat().st_mtime for b in built) < source.stat().st_mtime:
            pytest.exit(
                f"{source} changed after it was compiled: rebuild with `make` (or "
                f"`pip install -e .`), or test the source with {_pure.ENV}=1",
                returncode=2,
            )


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers(name="backend"):
        (name,) = marker.args
        if name not in BACKENDS:
            pytest.fail(f"unknown backend {name!r}; known: {', '.join(sorted(BACKENDS))}")
        host, port = BACKENDS[name]
        if not _reachable(host, port):
            reason = f"{name} is not reachable at {host}:{port}"
            if os.environ.get("DISTSYS_REQUIRE_BACKENDS") == "1":
                pytest.fail(f"{reason} (DISTSYS_REQUIRE_BACKENDS=1)")
            pytest.skip(reason)


def wait_until(predicate: Callable[[], bool], *, timeout: float = 10.0) -> None:
    """Spin until ``predicate()`` holds: synchronisation with another thread, not a timeout.

    Raises AssertionError if it never holds (a hung test fails instead of blocking CI).
    """
    give_up = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > give_up:
            raise AssertionError("condition never became true")
        time.sleep(0.0005)
