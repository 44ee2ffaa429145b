"""Time from ``register`` in one process to the instance appearing in another's Resolver.

Run: ``.venv/bin/python benchmarks/bench_registry.py [--registrations 200] [--backends ...]``

A child process registers instances one at a time; the parent follows the service with
a Resolver and notes when each appears. Both read ``time.monotonic()`` (CLOCK_MONOTONIC,
shared by every process of a Linux machine), so the latency is measured across the
process boundary: from just before ``register()`` in the child to the Resolver's view
changing in the parent. Targets: p50 within 100 ms on SQLite, 20 ms on Redis and etcd.

Not part of the test suite. Redis and etcd runs need the servers on 127.0.0.1 (CI starts
them); an unreachable backend is reported and skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import socket
import statistics
import sys
import tempfile
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path

from rich.console import Console
from rich.table import Table

from distsys.registry import Instance, Registration, open_registry

TARGETS_MS = {"sqlite": 100.0, "redis": 20.0, "etcd": 20.0}
SERVERS = {"redis": ("127.0.0.1", 6379), "etcd": ("127.0.0.1", 2379)}


def _registrar(url: str, service: str, count: int, pipe: Connection) -> None:
    """Child process: register instance i when told, report when register() started."""

    async def main() -> None:
        registry = open_registry(url)
        kept: list[Registration] = []
        for i in range(count):
            pipe.recv()  # the parent is ready for the next one
            started = time.monotonic()
            kept.append(
                await registry.register(Instance(service, f"i{i}", "127.0.0.1", 10000 + i), ttl=30)
            )
            pipe.send(started)
        pipe.recv()
        for registration in kept:
            await registration.aclose()
        await registry.aclose()

    asyncio.run(main())


async def measure(url: str, count: int) -> list[float]:
    """Return the register-to-visible latencies in milliseconds."""
    service = f"bench{uuid.uuid4().hex[:8]}"
    here, there = mp.Pipe()
    child = mp.get_context("spawn").Process(target=_registrar, args=(url, service, count, there))
    child.start()
    seen: dict[str, float] = {}
    latencies: list[float] = []
    try:
        async with (
            open_registry(url) as registry,
            registry.resolver(service, self_preservation=1.0) as resolver,
        ):
            resolver.subscribe(lambda view: [seen.setdefault(i.id, time.monotonic()) for i in view])
            for i in range(count):
                here.send("go")
                await resolver.wait_for(lambda r, i=i: f"i{i}" in seen, timeout=30)
                started = await asyncio.to_thread(here.recv)
                latencies.append((seen[f"i{i}"] - started) * 1000)
            here.send("done")
    finally:
        child.join(60)
        if child.is_alive():
            child.kill()
    return latencies


def _heartbeater(url: str, service: str, ttl: float, heartbeat: float, pipe: Connection) -> None:
    """Child process: register one instance and heartbeat until killed."""

    async def main() -> None:
        registry = open_registry(url)
        await registry.register(
            Instance(service, "doomed", "127.0.0.1", 9999), ttl=ttl, heartbeat=heartbeat
        )
        pipe.send("registered")
        await asyncio.Event().wait()

    asyncio.run(main())


async def measure_expiry(url: str, ttl: float, heartbeat: float) -> float:
    """Return seconds from SIGKILL of a registered process to its removal in a Resolver."""
    service = f"bench{uuid.uuid4().hex[:8]}"
    here, there = mp.Pipe()
    child = mp.get_context("spawn").Process(
        target=_heartbeater, args=(url, service, ttl, heartbeat, there)
    )
    child.start()
    try:
        async with (
            open_registry(url) as registry,
            registry.resolver(service, self_preservation=1.0) as resolver,
        ):
            await asyncio.to_thread(here.recv)
            await resolver.wait_for(lambda r: len(r.instances()) == 1, timeout=30)
            await asyncio.sleep(heartbeat * 1.5)  # let it beat at least once
            child.kill()
            killed = time.monotonic()
            await resolver.wait_for(lambda r: not r.instances(), timeout=ttl * 10 + 30)
            return time.monotonic() - killed
    finally:
        child.join(10)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--registrations", type=int, default=200)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "redis", "etcd"])
    parser.add_argument("--kills", type=int, default=5, help="SIGKILL trials per backend")
    parser.add_argument("--ttl", type=float, default=2.0)
    parser.add_argument("--heartbeat", type=float, default=0.5)
    args = parser.parse_args()
    console = Console()
    table = Table(title=f"register -> visible in another process ({args.registrations} each)")
    expiry = Table(
        title=f"SIGKILL -> gone from another process's Resolver "
        f"(ttl {args.ttl}s, heartbeat {args.heartbeat}s, {args.kills} kills each)"
    )
    bound = args.ttl + args.heartbeat
    for column in ("backend", "median s", "max s", f"bound ttl+heartbeat {bound}s", "verdict"):
        expiry.add_column(column, justify="left" if column == "backend" else "right")
    for column in ("backend", "p50 ms", "p99 ms", "max ms", "target p50", "verdict"):
        table.add_column(column, justify="left" if column == "backend" else "right")
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        urls = {
            "sqlite": f"sqlite:///{Path(tmp) / 'registry.db'}",
            "redis": f"redis://127.0.0.1:6379/0?namespace=bench{uuid.uuid4().hex[:8]}",
            "etcd": "etcd://127.0.0.1:2379",
        }
        for backend in args.backends:
            if backend in SERVERS and not _reachable(*SERVERS[backend]):
                table.add_row(backend, "-", "-", "-", f"{TARGETS_MS[backend]:.0f}", "unreachable")
                continue
            gone = [
                asyncio.run(measure_expiry(urls[backend], args.ttl, args.heartbeat))
                for _ in range(args.kills)
            ]
            within = max(gone) <= bound
            failed |= not within
            expiry.add_row(
                backend,
                f"{statistics.median(gone):.2f}",
                f"{max(gone):.2f}",
                f"{bound:.2f}",
                "PASS" if within else "FAIL",
            )
            latencies = sorted(asyncio.run(measure(urls[backend], args.registrations)))
            p50 = statistics.median(latencies)
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            ok = p50 <= TARGETS_MS[backend]
            failed |= not ok
            table.add_row(
                backend,
                f"{p50:.2f}",
                f"{p99:.2f}",
                f"{latencies[-1]:.2f}",
                f"{TARGETS_MS[backend]:.0f}",
                "PASS" if ok else "FAIL",
            )
    console.print(f"CPython {sys.version.split()[0]}, monotonic clock shared across processes")
    console.print(table)
    console.print(expiry)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
