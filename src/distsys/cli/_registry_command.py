"""``distsys registry``: list and watch what is registered."""

from __future__ import annotations

import asyncio
import os

import click
from rich.console import Console
from rich.table import Table

from distsys.errors import DistsysError
from distsys.registry import ChangeKind, Instance, Registry, ServiceChange, open_registry

__all__ = ["registry"]

DEFAULT_URL = "sqlite:///.distsys/registry.db"

_url_option = click.option(
    "--url",
    default=lambda: os.environ.get("DISTSYS_REGISTRY_URL", DEFAULT_URL),
    show_default=f"$DISTSYS_REGISTRY_URL or {DEFAULT_URL}",
    help="The registry backend: sqlite:///file.db, redis://host:6379/0, etcd://host:2379.",
)


@click.group()
def registry() -> None:
    """Inspect the service registry."""


def _open(url: str) -> Registry:
    try:
        return open_registry(url)
    except DistsysError as exc:
        raise click.BadParameter(str(exc), param_hint="--url") from None


def _row(instance: Instance) -> tuple[str, ...]:
    metadata = " ".join(f"{k}={v}" for k, v in sorted(instance.metadata.items()))
    status = instance.status.name
    style = {"UP": "green", "DRAINING": "yellow", "DOWN": "red"}[status]
    return (
        instance.service,
        instance.id,
        instance.address,
        f"[{style}]{status}[/]",
        instance.zone,
        str(instance.weight),
        metadata,
    )


@registry.command("ls")
@_url_option
@click.argument("service", required=False)
def list_instances(url: str, service: str | None) -> None:
    """List the registered instances (of SERVICE, or of every service)."""

    async def collect() -> list[Instance]:
        async with _open(url) as reg:
            names = [service] if service else await reg.services()
            found: list[Instance] = []
            for name in names:
                found += await reg.instances(name)
            return found

    try:
        instances = asyncio.run(collect())
    except DistsysError as exc:
        raise click.ClickException(str(exc)) from None
    table = Table(title=f"registry {url}")
    for column in ("service", "id", "address", "status", "zone", "weight", "metadata"):
        table.add_column(column, justify="right" if column == "weight" else "left")
    for instance in instances:
        table.add_row(*_row(instance))
    console = Console()
    console.print(table)
    if not instances:
        console.print("no instances registered" + (f" for {service}" if service else ""))


def _describe(change: ServiceChange) -> str:
    if change.kind is ChangeKind.RESET:
        listed = ", ".join(f"{i.id}@{i.address}" for i in change.instances) or "none"
        return f"snapshot: {len(change.instances)} instance(s): {listed}"
    assert change.instance is not None
    instance = change.instance
    what = change.kind.value
    if change.kind is ChangeKind.REMOVED and change.expired:
        what = "expired (lease ran out)"
    return (
        f"{what} {instance.id} {instance.address} {instance.status.name}; "
        f"now {len(change.instances)} instance(s)"
    )


@registry.command("watch")
@_url_option
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many changes.")
@click.argument("service")
def watch(url: str, service: str, count: int | None) -> None:
    """Print SERVICE's changes as they happen (Ctrl-C to stop)."""
    console = Console(highlight=False)

    async def follow() -> None:
        async with _open(url) as reg:
            seen = 0
            async for change in reg.watch(service):
                console.print(_describe(change))
                seen += 1
                if count is not None and seen >= count:
                    return

    try:
        asyncio.run(follow())
    except DistsysError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass
