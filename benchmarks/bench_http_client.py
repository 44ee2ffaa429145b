"""Requests per second of distsys's HTTP client path against aiohttp and httpx, side by side.

Run: ``.venv/bin/python benchmarks/bench_http_client.py [--requests N] [--concurrency C]
[--rounds R] [--json PATH]``

The upstream is a raw asyncio Protocol "hello" server (httptools parser, a constant
13-byte answer) running on uvloop in a child process, so the numbers measure the clients,
not the server. Every client runs on uvloop in this process and does the same thing:
``GET /`` and read the whole body, over keep-alive connections, first one request at a
time (``sequential``), then from C concurrent tasks sharing one client (``concurrent``).
Contenders:

* ``distsys transport`` — ``ConnectionPool.request`` + ``Response.read`` (what the gateway
  uses per upstream)
* ``distsys ServiceClient`` — ``ServiceClient.get`` through a memory registry with one
  instance: resolver, P2C-EWMA pick, circuit breaker, retry budget, deadline and request
  id headers, body read, JSON-ready response object
* ``aiohttp`` — ``ClientSession.get`` + ``read()`` (``TCPConnector(limit=C)``)
* ``httpx`` — ``AsyncClient.get`` (skipped if httpx is not installed)

Contenders take turns for R rounds; each one's best round counts, so a burst of load
from elsewhere on the machine does not decide the comparison. The client and the server
share the machine's cores (2 here), so requests/s also depends on the server's share;
the client's own CPU time per request (``time.process_time`` of this process) is
printed too — it is what a gateway pays per proxied request on its core. Not part of
the test suite; nothing asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from importlib import metadata
from typing import Any

Request = Callable[[], Awaitable[object]]
Setup = Callable[[AsyncExitStack, str, int, int], Awaitable[Request]]

# -- the upstream (a child process: bench_http_client.py --serve PORT) ----------------------

_HELLO = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, world!"


def _serve(port: int) -> None:
    import httptools
    import uvloop

    class Hello(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: Any = transport
            self.parser = httptools.HttpRequestParser(self)

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_message_complete(self) -> None:
            self.transport.write(_HELLO)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Hello, "127.0.0.1", port, backlog=1024)
        print("ready", flush=True)
        await server.serve_forever()

    uvloop.run(main())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the contenders -------------------------------------------------------------------------


async def distsys_transport(stack: AsyncExitStack, host: str, port: int, c: int) -> Request:
    from distsys.http import ConnectionPool

    pool = await stack.enter_async_context(ConnectionPool(host, port, max_connections=c))

    async def one() -> object:
        response = await pool.request("GET", "/")
        return await response.read()

    return one


async def distsys_service_client(stack: AsyncExitStack, host: str, port: int, c: int) -> Request:
    from distsys.http import HTTPClient
    from distsys.registry import Instance, open_registry
    from distsys.service._client import ServiceClient

    registry = await stack.enter_async_context(open_registry("memory://"))
    await registry.register(Instance("hello", "h1", host, port), ttl=60)
    http = HTTPClient(max_connections=c)
    client = await stack.enter_async_context(ServiceClient("hello", registry, http=http))
    stack.push_async_callback(http.aclose)

    async def one() -> object:
        return (await client.get("/")).content

    return one


async def aiohttp_client(stack: AsyncExitStack, host: str, port: int, c: int) -> Request:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=c)
    session = await stack.enter_async_context(aiohttp.ClientSession(connector=connector))
    url = f"http://{host}:{port}/"

    async def one() -> object:
        async with session.get(url) as response:
            return await response.read()

    return one


async def httpx_client(stack: AsyncExitStack, host: str, port: int, c: int) -> Request:
    httpx: Any = importlib.import_module("httpx")  # optional: not a dependency
    limits = httpx.Limits(max_connections=c, max_keepalive_connections=c)
    client = await stack.enter_async_context(httpx.AsyncClient(limits=limits))
    url = f"http://{host}:{port}/"

    async def one() -> object:
        return (await client.get(url)).content

    return one


CONTENDERS: dict[str, Setup] = {
    "distsys transport": distsys_transport,
    "distsys ServiceClient": distsys_service_client,
    "aiohttp": aiohttp_client,
}
if importlib.util.find_spec("httpx") is not None:
    CONTENDERS["httpx"] = httpx_client
BASELINE = "aiohttp"


async def _measure(setup: Setup, port: int, requests: int, concurrency: int) -> tuple[float, float]:
    """Return requests per second, and this process's CPU seconds per request."""
    async with AsyncExitStack() as stack:
        one = await setup(stack, "127.0.0.1", port, max(concurrency, 1))
        share = requests // concurrency

        async def worker(n: int) -> None:
            for _ in range(n):
                await one()

        await asyncio.gather(*(worker(200) for _ in range(concurrency)))  # warm up
        cpu = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(worker(share) for _ in range(concurrency)))
        wall = time.perf_counter() - started
        done = share * concurrency
        return done / wall, (time.process_time() - cpu) / done


def measure(setup: Setup, port: int, requests: int, concurrency: int) -> tuple[float, float]:
    import uvloop

    return uvloop.run(_measure(setup, port, requests, concurrency))


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="requests per round")
    parser.add_argument("--concurrency", type=int, default=32, help="tasks of the concurrent run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the best one counts")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve)
        return

    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            sys.exit("the upstream did not start")
        shapes = {"sequential": 1, f"concurrent ({args.concurrency} tasks)": args.concurrency}
        best: dict[tuple[str, str], float] = {}
        cpu: dict[tuple[str, str], float] = {}
        for round_ in range(args.rounds):
            for shape, tasks in shapes.items():
                names = list(CONTENDERS)
                names = names[round_ % len(names) :] + names[: round_ % len(names)]
                for name in names:
                    rate, seconds = measure(CONTENDERS[name], port, args.requests, tasks)
                    key = (shape, name)
                    best[key] = max(best.get(key, 0.0), rate)
                    cpu[key] = min(cpu.get(key, float("inf")), seconds)
            console.print(f"round {round_ + 1}/{args.rounds} done")
    finally:
        server.terminate()
        server.wait(timeout=10)

    console.print(
        f"Python {platform.python_version()}, {os.cpu_count()} cores, uvloop "
        f"{_version('uvloop')}, httptools {_version('httptools')}, aiohttp "
        f"{_version('aiohttp')}, httpx {_version('httpx')}; {args.requests} requests per "
        f"round, best of {args.rounds}"
    )
    if "httpx" not in CONTENDERS:
        console.print("httpx is not installed: skipped")
    for shape in shapes:
        table = Table(title=f"GET / and read the body, {shape}")
        table.add_column("client")
        table.add_column("requests/s", justify="right")
        table.add_column(f"x {BASELINE}", justify="right")
        table.add_column("client CPU µs/request", justify="right")
        table.add_column(f"CPU x {BASELINE}", justify="right")
        base = best[(shape, BASELINE)]
        base_cpu = cpu[(shape, BASELINE)]
        for name in CONTENDERS:
            rate, seconds = best[(shape, name)], cpu[(shape, name)]
            table.add_row(
                name,
                f"{rate:,.0f}",
                f"{rate / base:.2f}",
                f"{seconds * 1e6:.1f}",
                f"{seconds / base_cpu:.2f}",
            )
        console.print(table)
    console.print(
        "requests/s: best round (client and server share the cores); CPU: this process's "
        "CPU time per request in its best round (what a gateway's core pays per request)"
    )
    if args.json:
        rows = [
            {"shape": s, "client": n, "requests_per_s": r, "cpu_us_per_request": cpu[(s, n)] * 1e6}
            for (s, n), r in best.items()
        ]
        with open(args.json, "w") as out:
            json.dump(rows, out, indent=2)


if __name__ == "__main__":
    main()
