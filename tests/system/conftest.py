"""Real processes on loopback: a SQLite registry file, service replicas and a gateway.

``system`` (a fixture) is a :class:`System` in the test's temporary directory: it starts
``distsys service run`` and ``distsys gateway`` processes, each in a process group of its
own with its output in a log file, reads the gateway's admin API, and at the end stops
every process (SIGTERM to the group, SIGKILL after a bound) and checks none is left.
:class:`Load` keeps an open-loop load (the generator of ``distsys load``) on a URL until
told to stop.

Every wait is bounded and polls for a condition: these tests run on a loaded 2-core
machine, where a process takes a second or more to import and start.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from distsys.cli._children import Child
from distsys.cli._load_command import LoadReport, run_load
from distsys.http import HTTPClient

ROOT = Path(__file__).resolve().parents[2]
START = 30.0  # seconds a process may take to import and serve
WAIT = 15.0  # seconds any other condition may take to come true
STOP = 10.0  # seconds a process may take to drain before it is SIGKILLed
POLL = 0.02

_SERVING = r"serving on http://127\.0\.0\.1:(\d+) \(instance (\S+), registered in"
_GATEWAY = r"gateway serving on http://127\.0\.0\.1:(\d+) \(admin http://127\.0\.0\.1:(\d+)\)"


async def eventually(predicate: Callable[[], bool], *, timeout: float = WAIT) -> None:
    """Poll ``predicate()`` until it holds (bounded: AssertionError after ``timeout`` s)."""
    give_up = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > give_up:
            raise AssertionError("the condition never became true")
        await asyncio.sleep(POLL)


@dataclass
class Replica:
    """A service process: its child, port and instance id."""

    child: Child
    port: int
    instance_id: str

    def lines(self, pattern: str) -> list[str]:
        """Return the lines of its output that match ``pattern``."""
        return re.findall(f"^.*{pattern}.*$", self.child.output(1 << 20), re.MULTILINE)


class System:
    """The processes of one test. Not thread-safe (one event loop)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.registry = f"sqlite:///{root / 'registry.db'}"
        self.children: list[Child] = []
        self.gateway: Child | None = None
        self.port = 0  # the gateway's
        self.admin_port = 0
        self.http = HTTPClient()

    def _spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> Child:
        argv = [sys.executable, "-m", "distsys.cli", *args]
        log = self.root / f"{name}-{len(self.children)}.log"
        child = Child(name, argv, log=log, cwd=ROOT, env={**os.environ, **(env or {})})
        self.children.append(child)
        return child

    async def start_service(self, target: str = "tests.system.apps:svc", *extra: str) -> Replica:
        """Start ``distsys service run TARGET``; wait until it serves and is registered."""
        child = self._spawn(
            "service", "service", "run", *extra, target, "--registry", self.registry,
            "--app-dir", str(ROOT), "--drain-timeout", "5", "--log-level", "warning",
            env={"DISTSYS_REGISTRY_URL": self.registry},
        )  # fmt: skip
        found = await child.wait_for(_SERVING, timeout=START)
        return Replica(child, int(found.group(1)), found.group(2))

    async def start_replicas(self, count: int) -> list[Replica]:
        """Start ``count`` catalog replicas at once."""
        return list(await asyncio.gather(*(self.start_service() for _ in range(count))))

    async def start_gateway(self, *routes: dict[str, Any], **top: Any) -> None:
        """Start ``distsys gateway`` with these routes (and top-level tables or keys)."""
        config = {
            "registry": self.registry,
            "listen": "127.0.0.1:0",
            "admin": "127.0.0.1:0",
            "reload_interval": 0,
            "drain_timeout": "5s",
            **top,
        }
        path = self.root / "gateway.toml"
        path.write_text(_toml(config, list(routes)))
        child = self.gateway = self._spawn(
            "gateway", "gateway", "--config", str(path), "--log-level", "warning"
        )
        found = await child.wait_for(_GATEWAY, timeout=START)
        self.port, self.admin_port = int(found.group(1)), int(found.group(2))

    def url(self, path: str) -> str:
        """Return the gateway's URL of ``path``."""
        return f"http://127.0.0.1:{self.port}{path}"

    async def admin(self, path: str) -> Any:
        """GET the gateway's admin ``path`` and decode its JSON."""
        reply = await self.http.request("GET", f"http://127.0.0.1:{self.admin_port}{path}")
        return json.loads(await reply.read())

    async def eligible(self, service: str) -> set[str]:
        """Return the instances of ``service`` the gateway may pick now."""
        document = await self.admin("/services")
        return {
            instance["id"]
            for entry in document["services"]
            if entry["service"] == service
            for instance in entry["instances"]
            if instance["eligible"]
        }

    async def until_gateway_picks(self, service: str, ids: set[str]) -> None:
        """Wait until the gateway may pick exactly ``ids`` of ``service``."""
        give_up = time.monotonic() + WAIT
        while (seen := await self.eligible(service)) != ids:
            if time.monotonic() > give_up:
                raise AssertionError(f"the gateway picks {sorted(seen)}, not {sorted(ids)}")
            await asyncio.sleep(POLL)

    async def upstream_errors(self, route: str) -> Counter[str]:
        """Return the upstream errors of ``route`` by kind, from the gateway's ``/stats``."""
        stats = await self.admin("/stats")
        return Counter(stats["routes"][route]["errors"])

    async def aclose(self) -> list[Child]:
        """Stop every process (the gateway first); return those that did not drain."""
        stubborn = []
        gateway = self.gateway
        if gateway is not None and gateway.running and not await gateway.stop(STOP):
            stubborn.append(gateway)
        running = [c for c in self.children if c.running]
        for child, drained in zip(
            running, await asyncio.gather(*(c.stop(STOP) for c in running)), strict=True
        ):
            if not drained:
                stubborn.append(child)
        await self.http.aclose()
        return stubborn


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(value)  # strings and numbers: TOML reads JSON's forms of them


def _toml(top: dict[str, Any], routes: list[dict[str, Any]]) -> str:
    lines = [f"{k} = {_value(v)}" for k, v in top.items() if not isinstance(v, dict)]
    for key, table in top.items():
        if isinstance(table, dict):
            lines += [f"[{key}]", *(f"{k} = {_value(v)}" for k, v in table.items())]
    for route in routes:
        lines.append("[[routes]]")
        lines += [f"{k} = {_value(v)}" for k, v in route.items() if not isinstance(v, dict)]
        for key, table in route.items():
            if isinstance(table, dict):
                lines += [f"[routes.{key}]", *(f"{k} = {_value(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[System]:
    running = System(tmp_path)
    try:
        yield running
    finally:
        stubborn = await running.aclose()
        for child in running.children:
            child.kill()  # SIGKILL to every group, in case aclose was cut short
        left = [c.name for c in running.children if c.running]
        assert not left, f"processes left running: {left}"
        assert not stubborn, "did not drain on SIGTERM: " + "\n".join(
            f"{c.name}: {c.output()}" for c in stubborn
        )


@dataclass
class Totals:
    """What a :class:`Load` measured, summed over its runs."""

    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def failed(self) -> int:
        return self.sent - self.ok

    def add(self, report: LoadReport) -> None:
        self.sent += report.scheduled
        self.statuses.update(report.statuses)
        self.errors.update(report.errors)

    def __str__(self) -> str:
        return (
            f"{self.sent} sent, {self.ok} ok, {self.failed} failed "
            f"(statuses {dict(self.statuses)}, errors {dict(self.errors)})"
        )


class Load:
    """An open-loop load on ``url`` until :meth:`stop`: back-to-back runs of ``slice`` s.

    At most ``limit`` seconds in all (a bound, should the test never stop it).
    """

    def __init__(self, url: str, *, rate: float, slice: float = 0.5, limit: float = 40.0) -> None:
        self.url = url
        self.rate = rate
        self.slice = slice
        self.limit = limit
        self.totals = Totals()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Load:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def _run(self) -> None:
        give_up = time.monotonic() + self.limit
        while not self._stopping.is_set() and time.monotonic() < give_up:
            report = await run_load(
                self.url, rate=self.rate, duration=self.slice, connections=8, timeout=10.0
            )
            self.totals.add(report)

    async def stop(self) -> Totals:
        """Stop after the run in progress; return the totals."""
        self._stopping.set()
        assert self._task is not None
        await asyncio.wait_for(self._task, self.limit + 15)
        return self.totals

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
