"""``distsys gateway --config gateway.toml``: run the HTTP API gateway until SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from distsys.errors import DistsysError
from distsys.gateway import Gateway, GatewayConfig, GatewayConfigError, load_config

__all__ = ["gateway"]

_LEVELS = ("debug", "info", "warning", "error")


def _routes_table(config: GatewayConfig, source: str) -> Table:
    table = Table(title=f"{source}: {len(config.routes)} routes")
    for column in ("name", "match", "service", "forward", "timeout", "attempts", "balancer"):
        table.add_column(column)
    for route in config.routes:
        match = route.prefix
        if route.host:
            match = f"{route.host}{match}"
        if route.methods:
            match = f"{','.join(route.methods)} {match}"
        forward = "as is"
        if route.strip_prefix:
            forward = "strip prefix"
        elif route.rewrite is not None:
            forward = f"-> {route.rewrite}"
        table.add_row(
            route.name or route.prefix,
            match,
            route.service,
            forward,
            f"{route.timeout:g}s",
            str(route.retries),
            route.balancer + (f" ({route.hash_on})" if route.hash_on else ""),
        )
    return table


@click.command("gateway")
@click.option(
    "--config", "config_path", required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The TOML configuration (reloaded on SIGHUP and when the file changes).",
)  # fmt: skip
@click.option("--check", is_flag=True, help="Check the configuration, print the routes, exit.")
@click.option("--log-level", type=click.Choice(_LEVELS), default="info", show_default=True)
def gateway(config_path: Path, check: bool, log_level: str) -> None:
    """Run the HTTP API gateway described by --config until SIGTERM or Ctrl-C.

    Requests are routed by path prefix to the instances of services found in the
    registry; see docs/gateway.md. SIGHUP (or editing the file) reloads the routes
    without dropping requests; a configuration that does not check out is refused and
    the one in force stays.
    """
    try:
        config = load_config(config_path)
    except GatewayConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot read {config_path}: {exc}") from None
    if check:
        Console().print(_routes_table(config, str(config_path)))
        click.echo(f"{config_path}: the configuration is valid")
        return
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    import uvloop

    try:
        uvloop.run(_serve(config_path))
    except DistsysError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # after start-up, which reports its own
        raise click.ClickException(f"the gateway failed: {exc}") from None


def _say(message: str) -> None:
    """Print a status line on stdout; a reader that went away is not an error."""
    try:
        click.echo(message)
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_to_devnull()


def _stdout_to_devnull() -> None:
    """Point file descriptor 1 at the null device, so later writes and the flush at exit succeed."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # not a file (as under CliRunner), or closed
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _start_failure(exc: OSError) -> click.ClickException:
    """The error that reports a gateway which could not start."""
    return click.ClickException(f"the gateway could not start: {exc}")


async def _serve(config_path: Path) -> None:
    try:
        server = Gateway(config_path)
    except OSError as exc:  # the file went away since it was checked
        raise _start_failure(exc) from None
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    def stop() -> None:
        if not stopping:
            stopping.append(loop.create_task(server.stop()))

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    try:
        await server.start()
    except OSError as exc:  # the address is in use ...
        raise _start_failure(exc) from None
    gc.freeze()  # what startup made lives on: keep it out of every collection
    address, admin = server.address, server.admin_address
    assert address is not None
    assert admin is not None
    _say(
        f"gateway serving on http://{address[0]}:{address[1]} "
        f"(admin http://{admin[0]}:{admin[1]}), {server.statistics().routes} routes"
    )
    await server.serve()
    for task in stopping:
        await task
    _say("gateway stopped")
