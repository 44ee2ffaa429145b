"""``distsys demo system``: the parts as one system, in processes of their own on loopback.

It starts a SQLite registry file (in a temporary directory), three replicas of a catalog
service (``distsys service run``, each registering itself with a lease) and the gateway
(``distsys gateway`` with a generated configuration routing ``/api`` to them), then puts
an open-loop load on the gateway with the generator of ``distsys load``, in phases:

1. steady: three replicas share the load;
2. one replica is killed with SIGKILL in the middle of the load: the requests that meet
   it (connection refused, or lost in flight) are retried by the gateway on another
   replica, and its breaker opens and ejects it;
3. routed around: the load goes on, with no failed request;
4. a replacement replica registers and takes its share.

A summary table gives, per phase, the requests sent, failed and the latency percentiles
as the client saw them, the upstream errors the gateway met (and retried), and the
attempts each replica got. Then every process is stopped (SIGTERM to its process group,
SIGKILL after a bound) and the directory removed. Ctrl-C stops everything the same way,
at any point.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from distsys.cli._children import Child
from distsys.cli._load_command import run_load
from distsys.cli._system_report import (
    Phase,
    ReplicaRow,
    Snapshot,
    phase_line,
    read_snapshot,
    replicas_table,
    summary_table,
)
from distsys.errors import DistsysError
from distsys.http import HTTPClient

__all__ = ["system_demo"]

SERVICE = "catalog"
ROUTE = "catalog"
TARGET = "distsys.cli._system_service:svc"
START_TIMEOUT = 30.0  # seconds a process may take to import and serve on a busy machine
SEE_TIMEOUT = 15.0  # seconds the gateway may take to see a registry change
STOP_TIMEOUT = 8.0  # seconds a process may take to drain on SIGTERM before SIGKILL
_POLL = 0.05
_ENDING = (signal.SIGTERM, signal.SIGHUP)  # end the demo as Ctrl-C does, with clean-up

_SERVING = r"serving on (http://127\.0\.0\.1:\d+) \(instance (\S+), registered in"
_GATEWAY = r"gateway serving on (http://127\.0\.0\.1:\d+) \(admin (http://127\.0\.0\.1:\d+)\)"


def gateway_config(registry: str) -> str:
    """Return the gateway's configuration (TOML) for the demo."""
    return f"""\
# written by `distsys demo system`
registry = {json.dumps(registry)}
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
reload_interval = 0
drain_timeout = "3s"

[[routes]]
name = "{ROUTE}"
prefix = "/api"
service = "{SERVICE}"
strip_prefix = true
timeout = "2s"
retries = 3                 # attempts: a refused or lost GET goes to another replica
balancer = "round_robin"    # every replica gets its share: the kill is felt at once

[routes.breaker]
failure_rate = 0.5
minimum_calls = 10
window = "2s"
wait = "5s"
"""


class Replica:
    """A replica of the catalog service: its process, instance id and address."""

    def __init__(self, number: int, child: Child, instance_id: str, url: str) -> None:
        self.number = number
        self.child = child
        self.instance_id = instance_id
        self.url = url
        self.fate = "served"


class Cluster:
    """The demo's processes and their directory. Not thread-safe (one event loop)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="distsys-demo-"))
        self.registry = f"sqlite:///{self.root / 'registry.db'}"
        self.children: list[Child] = []
        self.replicas: list[Replica] = []
        self.gateway: Child | None = None
        self.gateway_url = ""
        self.admin_url = ""

    def _spawn(self, name: str, *args: str) -> Child:
        argv = [sys.executable, "-m", "distsys.cli", *args]
        log = self.root / f"{name.replace(' ', '-')}.log"
        child = Child(name, argv, log=log, cwd=self.root, env=dict(os.environ))
        self.children.append(child)
        return child

    async def start_replica(self, number: int) -> Replica:
        """Start replica ``number`` and wait until it serves and is registered."""
        child = self._spawn(
            f"replica {number}", "service", "run", TARGET, "--registry", self.registry,
            "--drain-timeout", "3", "--log-level", "warning",
        )  # fmt: skip
        found = await child.wait_for(_SERVING, timeout=START_TIMEOUT)
        replica = Replica(number, child, instance_id=found.group(2), url=found.group(1))
        self.replicas.append(replica)
        return replica

    async def start_gateway(self) -> Child:
        """Write the configuration, start the gateway and wait until it serves."""
        config = self.root / "gateway.toml"
        config.write_text(gateway_config(self.registry))
        child = self._spawn("gateway", "gateway", "--config", str(config), "--log-level", "warning")
        found = await child.wait_for(_GATEWAY, timeout=START_TIMEOUT)
        self.gateway, self.gateway_url, self.admin_url = child, found.group(1), found.group(2)
        return child

    async def aclose(self) -> str:
        """Stop the gateway, then the replicas (SIGTERM, then SIGKILL); say how it went."""
        drained: list[str] = []
        killed: list[str] = []
        if self.gateway is not None and self.gateway.running:
            gateway = await self.gateway.stop(STOP_TIMEOUT)
            (drained if gateway else killed).append(self.gateway.name)
        running = [c for c in self.children if c.running]
        outcomes = await asyncio.gather(*(c.stop(STOP_TIMEOUT) for c in running))
        for child, done in zip(running, outcomes, strict=True):
            (drained if done else killed).append(child.name)
        self.kill_all()
        said = []
        if drained:
            said.append(f"{', '.join(drained)} drained on SIGTERM")
        if killed:
            said.append(f"{', '.join(killed)} SIGKILLed after {STOP_TIMEOUT:g} s")
        return "; ".join(said) or "nothing was running"

    def kill_all(self) -> None:
        """SIGKILL every process group left and remove the directory (synchronous)."""
        for child in self.children:
            child.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def left(self) -> list[Child]:
        """Return the children still running."""
        return [c for c in self.children if c.running]


class Story:
    """The demo's script: starts the system, runs the phases, prints as it goes."""

    def __init__(
        self, cluster: Cluster, console: Console, http: HTTPClient, *, rate: float, phase: float
    ) -> None:
        self.cluster = cluster
        self.console = console
        self.http = http
        self.rate = rate
        self.seconds = phase
        self.phases: list[Phase] = []

    async def _admin(self, path: str) -> Any:
        response = await self.http.request("GET", self.cluster.admin_url + path)
        return json.loads(await response.read())

    async def snapshot(self) -> Snapshot:
        """Read the gateway's view of the replicas and its upstream errors."""
        services, stats = await self._admin("/services"), await self._admin("/stats")
        return read_snapshot(services, stats, service=SERVICE, route=ROUTE)

    async def until_gateway_sees(self, instance_ids: set[str]) -> float:
        """Wait until the gateway may pick exactly ``instance_ids``; return the seconds."""
        started = time.monotonic()
        while True:
            seen = await self.snapshot()
            eligible = {i.id for i in seen.instances.values() if i.eligible}
            if eligible == instance_ids:
                return time.monotonic() - started
            if time.monotonic() - started > SEE_TIMEOUT:
                raise DistsysError(
                    f"the gateway did not see {sorted(instance_ids)} within {SEE_TIMEOUT:g} s "
                    f"(it sees {sorted(eligible)})"
                )
            await asyncio.sleep(_POLL)

    async def run_phase(self, title: str, *, kill: Replica | None = None) -> Phase:
        """Put the load on the gateway for one phase (killing ``kill`` a quarter in)."""
        number = len(self.phases) + 1
        self.console.print(f"[bold]{number} {title}[/]", highlight=False)
        before = await self.snapshot()
        killer = None
        events: list[str] = []
        if kill is not None:
            killer = asyncio.create_task(self._kill_later(kill, self.seconds / 4, events))
        report = await run_load(
            f"{self.cluster.gateway_url}/api/items/42",
            rate=self.rate,
            duration=self.seconds,
            connections=16,
            timeout=5.0,
        )
        if killer is not None:
            await killer
        phase = Phase(number, title, report, before, await self.snapshot(), events)
        self.console.print(f"  {phase_line(phase)}", highlight=False)
        self.phases.append(phase)
        return phase

    async def _kill_later(self, replica: Replica, delay: float, events: list[str]) -> None:
        await asyncio.sleep(delay)
        replica.child.signal_group(signal.SIGKILL)
        replica.fate = "SIGKILLed"
        text = f"SIGKILL replica {replica.number} (pid {replica.child.pid}) at +{delay:.1f} s"
        events.append(text)
        self.console.print(f"  [red]{text}[/]", highlight=False)

    async def tell(self, replicas: int) -> None:
        """Run the whole story."""
        console, cluster = self.console, self.cluster
        console.print(
            f"[bold]distsys demo system[/]: a registry, {replicas} replicas of a {SERVICE} "
            "service\nand a gateway, each a process of its own on 127.0.0.1",
            highlight=False,
        )
        console.print(f"  registry   {cluster.registry}", highlight=False)
        started = await asyncio.gather(*(cluster.start_replica(n + 1) for n in range(replicas)))
        for replica in started:
            self._say_replica(replica)
        gateway = await cluster.start_gateway()
        console.print(
            f"  gateway    {cluster.gateway_url}  admin {cluster.admin_url}  pid {gateway.pid}\n"
            f"             /api -> {SERVICE}: round robin, a breaker per replica, 3 attempts",
            highlight=False,
        )
        await self.until_gateway_sees({r.instance_id for r in started})
        console.print(
            f"load: GET /api/items/42, {self.rate:g} req/s, {self.seconds:g} s a phase, "
            "open loop (distsys load)",
            highlight=False,
        )
        await self.run_phase("steady")
        victim = started[min(1, len(started) - 1)]
        await self.run_phase(f"kill replica {victim.number}", kill=victim)
        breaker = self.phases[-1].after.instances.get(victim.instance_id)
        if breaker is not None and breaker.breaker:
            state = f"{breaker.breaker}{', ejected' if breaker.ejected else ''}"
            console.print(f"  replica {victim.number}'s breaker: {state}", highlight=False)
        await self.run_phase("routed around")
        began = time.monotonic()
        replacement = await cluster.start_replica(len(cluster.replicas) + 1)
        replacement.fate = "replacement"
        registered = time.monotonic() - began
        seen = await self.until_gateway_sees(
            {r.instance_id for r in cluster.replicas if r is not victim}
        )
        self._say_replica(replacement)
        console.print(
            f"  registered {registered:.1f} s after its start, "
            f"seen by the gateway {seen:.1f} s later",
            highlight=False,
        )
        await self.run_phase("replacement")
        self.summary()

    def _say_replica(self, replica: Replica) -> None:
        self.console.print(
            f"  replica {replica.number}  {replica.url}  {replica.instance_id}  "
            f"pid {replica.child.pid}",
            highlight=False,
        )

    def summary(self) -> None:
        """Print the tables and the verdict."""
        rows = [
            ReplicaRow(f"replica {r.number}", r.instance_id, r.fate)
            for r in sorted(self.cluster.replicas, key=lambda r: r.number)
        ]
        self.console.print(summary_table(self.phases))
        self.console.print(replicas_table(rows, self.phases))
        after = self.phases[2:]
        failed = sum(p.failed for p in after)
        sent = sum(p.report.scheduled for p in after)
        killed = self.phases[1]
        style = "green" if failed == 0 else "red"
        self.console.print(
            f"phase {killed.number}, a replica killed: {killed.failed:,} of "
            f"{killed.report.scheduled:,} requests failed ({killed.retried.total():,} "
            f"upstream errors met)\nafter it: [{style}]{failed:,} of {sent:,} failed[/]",
            highlight=False,
        )


async def run_system(
    cluster: Cluster, console: Console, *, rate: float, phase: float, replicas: int
) -> int:
    """Run the demo in ``cluster``; return the exit code (128 + the signal that ended it).

    Ctrl-C cancels it (and ``asyncio.run`` raises KeyboardInterrupt after the clean-up);
    SIGTERM and SIGHUP (the terminal closed) cancel it too, and it returns 143 or 129.
    """
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    assert me is not None
    ended_by: list[int] = []

    def on_signal(signum: int) -> None:
        ended_by.append(signum)
        me.cancel()

    for signum in _ENDING:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        async with HTTPClient() as http:
            story = Story(cluster, console, http, rate=rate, phase=phase)
            await story.tell(replicas)
    except asyncio.CancelledError:
        if not ended_by:
            raise  # Ctrl-C: asyncio.run turns it back into KeyboardInterrupt
        return 128 + ended_by[0]
    finally:
        await _shut_down(cluster, console)
        for signum in _ENDING:
            loop.remove_signal_handler(signum)
    return 0


async def _shut_down(cluster: Cluster, console: Console) -> None:
    count = len(cluster.children)
    said = await cluster.aclose()
    left = cluster.left()
    where = "removed" if not cluster.root.exists() else "NOT removed"
    console.print(
        f"stopped: {said}\n{count} processes started, {len(left)} left; {cluster.root} {where}",
        highlight=False,
    )


@click.command("system")
@click.option("--rate", type=click.FloatRange(min=1), default=200.0, show_default=True,
              help="Requests per second put on the gateway.")  # fmt: skip
@click.option("--phase", "phase", type=click.FloatRange(min=0.5), default=4.0,
              show_default=True, help="Seconds of load in each of the four phases.")  # fmt: skip
@click.option("--replicas", type=click.IntRange(2, 8), default=3, show_default=True,
              help="Replicas of the service at the start.")  # fmt: skip
def system_demo(rate: float, phase: float, replicas: int) -> None:
    """Registry, service replicas and gateway as processes: kill one under load.

    Starts a SQLite registry, REPLICAS replicas of a catalog service and the gateway,
    each a process of its own on 127.0.0.1; puts an open-loop load on the gateway;
    SIGKILLs a replica mid-load (the gateway retries and its breaker ejects the dead
    one: no failed request after that); starts a replacement that takes its share; and
    prints a summary. Ctrl-C stops every process and removes the temporary directory.
    """
    import uvloop

    console = Console(highlight=False)
    cluster = Cluster()
    try:
        code = uvloop.run(run_system(cluster, console, rate=rate, phase=phase, replicas=replicas))
    except KeyboardInterrupt:
        console.print("interrupted: every process stopped")
        sys.exit(130)
    except DistsysError as exc:  # a process did not start (ChildError), or was not seen
        raise click.ClickException(str(exc)) from None
    finally:
        cluster.kill_all()  # a second Ctrl-C may have cut the clean-up short
    if code:
        console.print(f"ended by {signal.Signals(code - 128).name}: every process stopped")
        sys.exit(code)
