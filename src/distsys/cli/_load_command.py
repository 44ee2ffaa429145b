"""``distsys load URL --rate R --duration D``: an open-loop HTTP load generator.

Open loop: request ``i`` is *scheduled* at ``start + i / rate`` whatever happened to the
ones before, and its latency is measured from that scheduled time to the end of its
response. A closed-loop tool (each connection sends its next request when the last one
answered) slows down with the server and so never sees the queue a slow server builds:
the requests it did not send are latency nobody measures ("coordinated omission", Gil
Tene). Here a request that waits for a free connection, or is sent late because the
generator itself fell behind, has that wait in its latency.

The schedule is kept with the event loop's timers, which tick in milliseconds: a
request may leave up to about a millisecond after its time, and that counts in its
latency too (the table says how far behind the generator fell at worst; past a few
milliseconds, it is the generator that is overloaded, not only the server).

Bounded: ``rate * duration`` requests at most, each bounded by ``--timeout``; after the
last one is scheduled, those in flight get ``--timeout`` to finish.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from dataclasses import dataclass, field

import click
from rich.console import Console
from rich.table import Table

from distsys.context import background, with_timeout
from distsys.errors import DistsysError
from distsys.gateway._config import parse_duration
from distsys.http import ConnectionPool, split_url

__all__ = ["LoadReport", "load", "percentile", "run_load"]

_MAX_REQUESTS = 10_000_000


@dataclass
class LoadReport:
    """What a load run measured.

    Attributes:
        scheduled: requests scheduled (``rate * duration``).
        completed: requests that got a whole response (any status).
        elapsed: seconds from the first scheduled request to the last response.
        statuses: responses by status code.
        errors: failures by kind (no response: connection refused, timeout ...).
        latencies: seconds from each completed request's scheduled time to its end.
        behind: the most seconds the generator itself sent a request after its time.
    """

    scheduled: int
    completed: int = 0
    elapsed: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    behind: float = 0.0

    @property
    def rate(self) -> float:
        """Completed requests per second."""
        return self.completed / self.elapsed if self.elapsed > 0 else 0.0


def percentile(ordered: list[float], share: float) -> float:
    """Return the ``share`` quantile of sorted values (nearest rank); 0.0 if empty."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


async def run_load(
    url: str,
    *,
    rate: float,
    duration: float,
    connections: int = 16,
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
    body: bytes | None = None,
    timeout: float = 10.0,
) -> LoadReport:
    """Send ``rate * duration`` requests to ``url`` on an open-loop schedule.

    Raises:
        InvalidArgumentError: the URL or a setting is not acceptable.
    """
    host, port, target = split_url(url)
    total = int(rate * duration)
    report = LoadReport(scheduled=total)
    loop = asyncio.get_running_loop()
    now = time.monotonic  # not loop.time(): uvloop's ticks in milliseconds
    root = background()
    pending: set[asyncio.Task[None]] = set()
    async with ConnectionPool(host, port, max_connections=connections) as pool:

        async def one(due: float) -> None:
            ctx, _ = with_timeout(root, timeout)
            try:
                response = await pool.request(method, target, headers, body, ctx=ctx)
                async for _chunk in response:
                    pass
            except Exception as exc:  # counted, not raised: the run goes on
                report.errors[type(exc).__name__] += 1
                return
            report.statuses[response.status] += 1
            report.completed += 1
            report.latencies.append(now() - due)

        start = now() + 0.01
        for i in range(total):
            due = start + i / rate
            wait = due - now()
            if wait > 0:
                await asyncio.sleep(wait)  # the loop's timers tick in milliseconds
            report.behind = max(report.behind, now() - due)
            task = loop.create_task(one(due))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.wait(set(pending), timeout=timeout + 1)
        for task in pending:
            task.cancel()
        report.elapsed = now() - start
    report.latencies.sort()
    return report


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> float:
    try:
        number: object = float(value)
    except ValueError:
        number = value
    try:
        seconds = float(parse_duration(number))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if seconds <= 0:
        raise click.BadParameter("must be > 0")
    return seconds


def _header(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        name, colon, text = value.partition(":")
        if not colon or not name.strip():
            raise click.BadParameter(f"{value!r} is not 'Name: value'")
        pairs.append((name.strip(), text.strip()))
    return pairs


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


@click.command("load")
@click.argument("url")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), required=True,
              help="Requests per second, scheduled at fixed intervals.")  # fmt: skip
@click.option("--duration", default="10s", show_default=True, callback=_duration,
              help="How long to schedule requests (seconds, or '30s', '2m').")  # fmt: skip
@click.option("--connections", type=click.IntRange(min=1), default=16, show_default=True,
              help="Keep-alive connections at most (a request waits for a free one).")  # fmt: skip
@click.option("--method", default="GET", show_default=True)
@click.option("--header", "headers", multiple=True, callback=_header,
              help="'Name: value' (repeatable).")  # fmt: skip
@click.option("--body", help="The request body (text; @path reads a file).")
@click.option("--timeout", default="10s", show_default=True, callback=_duration,
              help="The most a request may take.")  # fmt: skip
def load(
    url: str,
    rate: float,
    duration: float,
    connections: int,
    method: str,
    headers: list[tuple[str, str]],
    body: str | None,
    timeout: float,
) -> None:
    """Send an open-loop load of RATE requests per second to URL for DURATION.

    Latency is measured from each request's scheduled time (not from when it could be
    sent), so a server that falls behind shows its queue: no coordinated omission.
    Prints the achieved rate, the answers by status, the errors and the latency
    percentiles.
    """
    total = int(rate * duration)
    if total < 1:
        raise click.BadParameter("rate * duration schedules no request", param_hint="--rate")
    if total > _MAX_REQUESTS:
        raise click.BadParameter(f"rate * duration is over {_MAX_REQUESTS:,} requests")
    data: bytes | None = None
    if body is not None:
        if body.startswith("@"):
            with open(body[1:], "rb") as file:
                data = file.read()
        else:
            data = body.encode()
    import uvloop

    started = time.monotonic()
    try:
        report = uvloop.run(
            run_load(
                url,
                rate=rate,
                duration=duration,
                connections=connections,
                method=method.upper(),
                headers=headers,
                body=data,
                timeout=timeout,
            )
        )
    except DistsysError as exc:
        raise click.ClickException(str(exc)) from None
    wall = time.monotonic() - started
    Console().print(_table(url, rate, report, wall))


def _table(url: str, rate: float, report: LoadReport, wall: float) -> Table:
    table = Table(title=f"{url}: {rate:g} req/s scheduled, open loop", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    table.add_row("scheduled", f"{report.scheduled:,}")
    table.add_row("completed", f"{report.completed:,}")
    table.add_row("achieved rate", f"{report.rate:,.1f} req/s")
    for status, count in sorted(report.statuses.items()):
        style = "green" if status < 400 else "yellow" if status < 500 else "red"
        table.add_row(f"status {status}", f"[{style}]{count:,}[/]")
    for kind, count in sorted(report.errors.items()):
        table.add_row(f"error {kind}", f"[red]{count:,}[/]")
    ordered = report.latencies
    for label, share in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        table.add_row(f"latency {label}", f"{_ms(percentile(ordered, share))} ms")
    table.add_row("latency max", f"{_ms(ordered[-1] if ordered else 0.0)} ms")
    if report.behind > 0.005:
        table.add_row("generator behind", f"[yellow]{_ms(report.behind)} ms at worst[/]")
    table.add_row("wall time", f"{wall:.2f} s")
    return table
