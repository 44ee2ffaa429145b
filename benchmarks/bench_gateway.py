"""Proxied requests/s and added latency: the distsys gateway against nginx and aiohttp.

Run: ``.venv/bin/python benchmarks/bench_gateway.py [--duration 10] [--rounds 3]
[--connections 64] [--json PATH]``

One fast upstream replica — a raw asyncio Protocol "hello" server (httptools, a
constant 13-byte answer) on uvloop in its own process — is driven by wrk
(``-t1 -c64``, keep-alive) four ways, each in its own process:

* ``direct`` — wrk against the upstream itself (the ceiling);
* ``gateway`` — ``distsys gateway --config ...``: one process, one route, the instance
  found in a SQLite registry, P2C-EWMA balancing, a circuit breaker per instance, the
  retry budget, the deadline header, request ids, Prometheus counts and rolling rates;
* ``nginx`` — nginx as a reverse proxy (``worker_processes 1``, ``keepalive 128`` to the
  upstream, access log off), from a generated nginx.conf in a temporary prefix;
* ``aiohttp`` — an aiohttp server whose handler forwards with an aiohttp
  ``ClientSession`` (keep-alive pool), the usual way to write a proxy in asyncio Python.

Then ``wrk -c1``: the p50 latency of one connection, direct and through each proxy; the
gateway's *added* p50 is its p50 minus direct's. Last, ``ServiceClient`` calls per
second against the same upstream, from a process of their own (the instance found in
the same SQLite registry; P2C-EWMA, breaker, retry budget, deadline and request id
headers, body read), with ``--connections`` concurrent callers and with one.

Everything shares the machine's cores (2 here): wrk, the upstream and the proxy under
test. The contenders take turns for ``--rounds`` rounds (the order rotating), each run
``--duration`` seconds, and each figure is the median over the rounds, so load from
elsewhere on the machine hits every contender alike. The proxy's CPU time per request
(from ``/proc/<pid>/stat``) is printed too: it is what a proxy costs on its core, and
it moves less than requests/s on a busy machine. The load average is printed before and
after. Targets: gateway >= 0.5x nginx and >= 4x aiohttp in requests/s, and <= 150 µs
added at p50 with one connection. Not part of the test suite; nothing asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_HELLO = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, world!"

# -- the contenders' processes ---------------------------------------------------------------


def _serve_hello(port: int, registry: str | None) -> None:
    """The upstream: a raw Protocol hello server; registers itself when given a registry."""
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
        server = await loop.create_server(Hello, "127.0.0.1", port, backlog=2048)
        if registry is not None:
            from distsys.registry import Instance, open_registry

            reg = open_registry(registry)
            await reg.register(Instance("hello", "h1", "127.0.0.1", port), ttl=30)
        print("ready", flush=True)
        await server.serve_forever()

    uvloop.run(main())


def _serve_aiohttp(port: int, upstream: int) -> None:
    """The aiohttp proxy: aiohttp.web in, aiohttp.ClientSession out."""
    import aiohttp
    import uvloop
    from aiohttp import web

    hop = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}

    async def main() -> None:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30),
            auto_decompress=False,
        )
        base = f"http://127.0.0.1:{upstream}"

        async def proxy(request: web.Request) -> web.Response:
            async with session.request(
                request.method, base + request.path_qs, data=await request.read()
            ) as answer:
                body = await answer.read()
                headers = {
                    k: v
                    for k, v in answer.headers.items()
                    if k.lower() not in hop and k.lower() != "content-length"
                }
                return web.Response(body=body, status=answer.status, headers=headers)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", proxy)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=2048).start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    uvloop.run(main())


def _client_calls(registry: str, seconds: float, concurrency: int) -> None:
    """``ServiceClient.get`` for ``seconds`` from ``concurrency`` tasks; print the figures."""
    import uvloop

    from distsys.http import HTTPClient
    from distsys.registry import open_registry
    from distsys.service import ServiceClient

    async def main() -> dict[str, float]:
        latencies: list[float] = []
        async with open_registry(registry) as reg:
            http = HTTPClient(max_connections=max(concurrency, 1))
            async with ServiceClient("hello", reg, http=http) as client:
                for _ in range(200):  # warm-up: connections, the balancer's estimates
                    await client.get("/hello")
                clock = time.perf_counter
                stop = clock() + seconds
                begun = clock()
                cpu = time.process_time()

                async def caller() -> None:
                    while True:
                        start = clock()
                        if start >= stop:
                            return
                        answer = await client.get("/hello")
                        if answer.status != 200:
                            raise RuntimeError(f"the upstream answered {answer.status}")
                        latencies.append(clock() - start)

                async with asyncio.TaskGroup() as group:
                    for _ in range(concurrency):
                        group.create_task(caller())
                elapsed = clock() - begun
                cpu = time.process_time() - cpu
            await http.aclose()
        latencies.sort()
        return {
            "calls_per_s": len(latencies) / elapsed,
            "p50_us": latencies[len(latencies) // 2] * 1e6,
            "p99_us": latencies[int(len(latencies) * 0.99)] * 1e6,
            "cpu_us": cpu / max(len(latencies), 1) * 1e6,
        }

    print(json.dumps(uvloop.run(main())), flush=True)


def measure_client(registry: str, *, seconds: float, connections: int) -> dict[str, Any]:
    """ServiceClient calls/s at ``connections`` concurrent callers and at one."""
    results: dict[str, Any] = {}
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for concurrency in (connections, 1):
        done = subprocess.run(
            [sys.executable, __file__, "--client-calls", registry, f"{seconds:g}",
             str(concurrency)],
            capture_output=True, text=True, env=env, timeout=seconds + 120, check=True,
        )  # fmt: skip
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        results[f"c{concurrency}"] = figures
        print(f"  ServiceClient c{concurrency:<3} {figures['calls_per_s']:9,.0f} calls/s "
              f"p50 {figures['p50_us']:7.0f} µs p99 {figures['p99_us']:7.0f} µs "
              f"CPU {figures['cpu_us']:.1f} µs/call", flush=True)  # fmt: skip
    return results


_NGINX_CONF = """
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream hello {{ server 127.0.0.1:{upstream}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{port} backlog=2048;
        location / {{
            proxy_pass http://hello;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""

_GATEWAY_CONF = """
registry = "sqlite:///{tmp}/registry.db"
listen = "127.0.0.1:{port}"
admin = "127.0.0.1:0"
reload_interval = "0s"

[[routes]]
name = "hello"
prefix = "/"
service = "hello"
balancer = "p2c_ewma"
timeout = "10s"
"""

# -- running them ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[Any], name: str) -> None:
    give_up = time.monotonic() + 30
    while time.monotonic() < give_up:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on {port}")


@dataclass
class Run:
    """One wrk run against one contender."""

    rps: float
    p50_us: float
    p99_us: float
    requests: int
    errors: int
    cpu_us: float  # the proxy's CPU time per request (the upstream's for direct)


_UNITS = {"us": 1.0, "ms": 1000.0, "s": 1e6, "m": 6e7}


def _us(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    assert found is not None, text
    return float(found.group(1)) * _UNITS[found.group(2)]


def _field(pattern: str, out: str) -> str:
    found = re.search(pattern, out, re.MULTILINE)
    assert found is not None, f"{pattern!r} not in wrk's output:\n{out}"
    return found.group(1)


def _cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _wrk(port: int, seconds: float, connections: int, pids: list[int]) -> Run:
    url = f"http://127.0.0.1:{port}/hello"
    whole = max(1, round(seconds))  # wrk takes whole seconds only
    command = ["wrk", "-t1", f"-c{connections}", f"-d{whole}s", "--latency", url]
    before = _cpu_seconds(pids)
    done = subprocess.run(command, capture_output=True, text=True, timeout=whole + 60)
    out = done.stdout
    cpu = _cpu_seconds(pids) - before
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    requests = int(_field(r"(\d+) requests in", out))
    return Run(
        rps=float(_field(r"Requests/sec:\s+([\d.]+)", out)),
        p50_us=_us(_field(r"^\s+50%\s+(\S+)", out)),
        p99_us=_us(_field(r"^\s+99%\s+(\S+)", out)),
        requests=requests,
        errors=errors,
        cpu_us=cpu / max(requests, 1) * 1e6,
    )


def _child_pids(pid: int) -> list[int]:
    """``pid`` and its children (nginx's master and worker)."""
    found = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return found + [int(c) for c in children]


def start_all(tmp: Path) -> tuple[dict[str, tuple[int, list[int]]], list[subprocess.Popen[Any]]]:
    """Start the upstream and the three proxies; return ``{name: (port, pids)}``."""
    procs: list[subprocess.Popen[Any]] = []
    registry = f"sqlite:///{tmp}/registry.db"
    upstream = _free_port()
    hello = subprocess.Popen(
        [sys.executable, __file__, "--serve-hello", str(upstream), "--registry", registry],
        stdout=subprocess.PIPE,
        text=True,
    )
    procs.append(hello)
    _wait_port(upstream, hello, "the upstream")
    ports: dict[str, tuple[int, list[int]]] = {"direct": (upstream, [hello.pid])}

    gateway_port = _free_port()
    conf = tmp / "gateway.toml"
    conf.write_text(_GATEWAY_CONF.format(tmp=tmp, port=gateway_port))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    gateway = subprocess.Popen(
        [sys.executable, "-m", "distsys.cli", "gateway", "--config", str(conf),
         "--log-level", "warning"],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    procs.append(gateway)
    _wait_port(gateway_port, gateway, "the gateway")
    ports["gateway"] = (gateway_port, [gateway.pid])

    if shutil.which("nginx"):
        nginx_port = _free_port()
        prefix = tmp / "nginx"
        prefix.mkdir()
        nconf = prefix / "nginx.conf"
        nconf.write_text(_NGINX_CONF.format(tmp=prefix, upstream=upstream, port=nginx_port))
        nginx = subprocess.Popen(
            ["nginx", "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(nconf),
             "-g", "daemon off;"],
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        procs.append(nginx)
        _wait_port(nginx_port, nginx, "nginx")
        time.sleep(0.2)
        ports["nginx"] = (nginx_port, _child_pids(nginx.pid))

    aio_port = _free_port()
    aio = subprocess.Popen(
        [sys.executable, __file__, "--serve-aiohttp", str(aio_port), str(upstream)],
        stdout=subprocess.PIPE,
        text=True,
    )
    procs.append(aio)
    _wait_port(aio_port, aio, "the aiohttp proxy")
    ports["aiohttp"] = (aio_port, [aio.pid])
    return ports, procs


def measure(
    ports: dict[str, tuple[int, list[int]]], *, seconds: float, rounds: int, connections: int
) -> tuple[dict[str, list[Run]], dict[str, list[Run]]]:
    """Interleaved rounds at ``connections``, then at one connection."""
    names = list(ports)
    loaded: dict[str, list[Run]] = {n: [] for n in names}
    single: dict[str, list[Run]] = {n: [] for n in names if n != "aiohttp"}
    for port, pids in ports.values():
        _wrk(port, 1, connections, pids)  # warm-up: connections, caches, JIT-free Python
    for n in range(rounds):
        order = names[n % len(names) :] + names[: n % len(names)]
        for name in order:
            port, pids = ports[name]
            run = _wrk(port, seconds, connections, pids)
            loaded[name].append(run)
            print(f"  round {n + 1} c{connections} {name:8} {run.rps:9,.0f} req/s "
                  f"p50 {run.p50_us:7.0f} µs p99 {run.p99_us:7.0f} µs "
                  f"cpu {run.cpu_us:5.1f} µs/req errors {run.errors}", flush=True)  # fmt: skip
    each = max(2, round(seconds / 2))
    for n in range(rounds):
        order = list(single)[n % len(single) :] + list(single)[: n % len(single)]
        for name in order:
            port, pids = ports[name]
            run = _wrk(port, each, 1, pids)
            single[name].append(run)
            print(f"  round {n + 1} c1  {name:8} p50 {run.p50_us:6.0f} µs "
                  f"{run.rps:8,.0f} req/s", flush=True)  # fmt: skip
    return loaded, single


def _median(runs: list[Run], field: str) -> float:
    return statistics.median(getattr(r, field) for r in runs)


def report(loaded: dict[str, list[Run]], single: dict[str, list[Run]]) -> dict[str, Any]:
    """Print the table, the ratios and PASS/FAIL; return the figures."""
    print()
    print(f"{'contender':10} {'req/s':>10} {'p50 µs':>8} {'p99 µs':>8} {'CPU µs/req':>11} "
          f"{'c1 p50 µs':>10}")  # fmt: skip
    figures: dict[str, Any] = {}
    for name, runs in loaded.items():
        c1 = _median(single[name], "p50_us") if name in single else None
        row = {
            "rps": _median(runs, "rps"),
            "p50_us": _median(runs, "p50_us"),
            "p99_us": _median(runs, "p99_us"),
            "cpu_us": _median(runs, "cpu_us"),
            "c1_p50_us": c1,
            "errors": sum(r.errors for r in runs),
        }
        figures[name] = row
        c1_text = "-" if c1 is None else f"{c1:.0f}"
        print(f"{name:10} {row['rps']:10,.0f} {row['p50_us']:8.0f} {row['p99_us']:8.0f} "
              f"{row['cpu_us']:11.1f} {c1_text:>10}")  # fmt: skip
    gw = figures["gateway"]
    checks: list[tuple[str, float, str, bool]] = []
    if "nginx" in figures:
        ratio = gw["rps"] / figures["nginx"]["rps"]
        checks.append(("gateway / nginx req/s", ratio, ">= 0.5", ratio >= 0.5))
        cpu_ratio = figures["nginx"]["cpu_us"] / gw["cpu_us"]
        print(f"\nCPU per request: nginx {figures['nginx']['cpu_us']:.1f} µs, "
              f"gateway {gw['cpu_us']:.1f} µs (nginx/gateway {cpu_ratio:.2f})")  # fmt: skip
    ratio = gw["rps"] / figures["aiohttp"]["rps"]
    checks.append(("gateway / aiohttp req/s", ratio, ">= 4", ratio >= 4))
    added = gw["c1_p50_us"] - figures["direct"]["c1_p50_us"]
    checks.append(("gateway added p50 at c1 (µs)", added, "<= 150", added <= 150))
    if "nginx" in figures:
        nginx_added = figures["nginx"]["c1_p50_us"] - figures["direct"]["c1_p50_us"]
        print(f"nginx added p50 at c1: {nginx_added:.0f} µs")
    print()
    for label, value, target, ok in checks:
        print(f"{label:32} {value:8.2f}  target {target:7}  {'PASS' if ok else 'FAIL'}")
    figures["checks"] = {label: {"value": v, "target": t, "pass": ok} for label, v, t, ok in checks}
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--serve-hello", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-aiohttp", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--registry", help=argparse.SUPPRESS)
    parser.add_argument("--client-calls", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client_calls:
        registry, seconds, concurrency = args.client_calls
        _client_calls(registry, float(seconds), int(concurrency))
        return 0
    if args.serve_hello:
        _serve_hello(args.serve_hello, args.registry)
        return 0
    if args.serve_aiohttp:
        _serve_aiohttp(*args.serve_aiohttp)
        return 0
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk")
        return 1
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} cores)")  # fmt: skip
    print(f"wrk -t1 -c{args.connections} -d{args.duration:g}s x {args.rounds} interleaved rounds, "
          f"then -c1; GET /hello (13-byte answer)")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        ports, procs = start_all(Path(tmp))
        try:
            loaded, single = measure(
                ports, seconds=args.duration, rounds=args.rounds, connections=args.connections
            )
            client = measure_client(
                f"sqlite:///{tmp}/registry.db",
                seconds=args.duration,
                connections=args.connections,
            )
        finally:
            for proc in reversed(procs):
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
    figures = report(loaded, single)
    figures["service_client"] = client
    print(f"ServiceClient: {client[f'c{args.connections}']['calls_per_s']:,.0f} calls/s "
          f"with {args.connections} callers, {client['c1']['calls_per_s']:,.0f} with one "
          f"(p50 {client['c1']['p50_us']:.0f} µs)")  # fmt: skip
    load = os.getloadavg()
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in load)}")
    figures["load_average_after"] = load
    if args.json:
        Path(args.json).write_text(json.dumps({**figures, "runs": {
            n: [asdict(r) for r in runs] for n, runs in loaded.items()}}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
