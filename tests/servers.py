"""Servers of a test's own, on free loopback ports, that the test may kill and restart.

The shared servers CI starts (Redis on 6379, etcd on 2379) are never stopped by tests;
a test that needs an outage starts one of these instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

READY_TIMEOUT = 10.0  # seconds a redis-server of our own may take to listen
START_TIMEOUT = 30.0  # seconds an etcd of our own may take to elect itself and serve


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _require(binary: str) -> None:
    if shutil.which(binary) is None:
        reason = f"this test starts a {binary} of its own: {binary} is not on PATH"
        if os.environ.get("DISTSYS_REQUIRE_BACKENDS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


class OwnRedis:
    """A redis-server of the test's own, password-protected, without persistence."""

    password = "not-a-secret-but-hidden"

    def __init__(self, directory: Path) -> None:
        _require("redis-server")
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0, **query: str) -> str:
        params = "&".join(f"{k}={v}" for k, v in query.items())
        return f"redis://:{self.password}@127.0.0.1:{self.port}/{db}" + (
            f"?{params}" if params else ""
        )

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--requirepass", self.password],
            cwd=self.directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    async def ready(self) -> None:
        async with asyncio.timeout(READY_TIMEOUT):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                except OSError:
                    await asyncio.sleep(0.02)
                    continue
                writer.close()
                await writer.wait_closed()
                return

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=READY_TIMEOUT)
            self.process = None


class OwnEtcd:
    """An etcd process on free loopback ports with its own data directory."""

    def __init__(self, root: Path, *flags: str) -> None:
        _require("etcd")
        self.data = root / "data"
        self.log = root / "etcd.log"
        self.client_port, self.peer_port = free_port(), free_port()
        self.flags = flags
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"etcd://127.0.0.1:{self.client_port}"

    def start(self) -> None:
        client = f"http://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    "etcd",
                    "--name=private",
                    f"--data-dir={self.data}",
                    f"--listen-client-urls={client}",
                    f"--advertise-client-urls={client}",
                    f"--listen-peer-urls={peer}",
                    f"--initial-advertise-peer-urls={peer}",
                    f"--initial-cluster=private={peer}",
                    *self.flags,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        give_up = time.monotonic() + START_TIMEOUT
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > give_up:
                self.kill()
                raise AssertionError(f"etcd did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.client_port}/health"
            with urllib.request.urlopen(url, timeout=1.0) as response:
                return b'"true"' in response.read()
        except OSError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None
