"""``distsys service run module:svc``: serve a Service (or any ASGI app) until SIGTERM."""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
from typing import Any

import click

from distsys.errors import DistsysError
from distsys.service import Service, State, Transition

__all__ = ["service"]

_LEVELS = ("debug", "info", "warning", "error")


@click.group()
def service() -> None:
    """Run HTTP services."""


def load_target(target: str, *, app_dir: str, name: str | None, factory: bool = False) -> Service:
    """Import ``module:attribute`` and return it as a Service (wrapping a plain ASGI app).

    With ``factory``, the attribute is called (without arguments) to make the app.

    Raises:
        click.BadParameter: the target cannot be imported or is not an ASGI app.
    """
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise click.BadParameter(
            "expected module:attribute, e.g. orders.app:svc", param_hint="TARGET"
        )
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(
            f"cannot import {module_name!r}: {exc}", param_hint="TARGET"
        ) from None
    found: Any = module
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise click.BadParameter(
                f"{module_name!r} has no attribute {attribute!r}", param_hint="TARGET"
            ) from None
    if factory:
        if not callable(found):
            raise click.BadParameter(f"{target} is not callable (--factory)", param_hint="TARGET")
        found = found()
    if isinstance(found, Service):
        if name is not None and name != found.name:
            raise click.BadParameter(
                f"{target} is the Service {found.name!r}; --name applies to wrapped apps",
                param_hint="--name",
            )
        return found
    if not callable(found):
        raise click.BadParameter(
            f"{target} is a {type(found).__name__}, not a Service or an ASGI app",
            param_hint="TARGET",
        )
    default = re.sub(r"[^A-Za-z0-9._-]", "-", module_name.rsplit(".", 1)[-1]).strip("-._")
    try:
        return Service.wrap(found, name=name or default or "service")
    except DistsysError as exc:
        raise click.BadParameter(str(exc), param_hint="--name") from None


@service.command("run")
@click.argument("target")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=0, show_default=True,
    help="Port to bind; 0 picks a free one (the real one is printed and registered).",
)  # fmt: skip
@click.option(
    "--registry", default=lambda: os.environ.get("DISTSYS_REGISTRY_URL"),
    show_default="$DISTSYS_REGISTRY_URL, else none",
    help="Registry to register in: sqlite:///file.db, redis://host:6379/0, etcd://host:2379.",
)  # fmt: skip
@click.option(
    "--drain-timeout", type=click.FloatRange(min=0), default=30.0, show_default=True,
    help="Seconds in-flight requests get to finish after SIGTERM.",
)  # fmt: skip
@click.option(
    "--drain-delay", type=click.FloatRange(min=0), default=0.0, show_default=True,
    help="Seconds to keep serving while marked DRAINING, before deregistering.",
)  # fmt: skip
@click.option("--advertise-host", help="Host to register (default: the bound address).")
@click.option("--name", help="Service name for a wrapped ASGI app (default: the module's name).")
@click.option("--app-dir", default=".", show_default=True, help="Directory to import TARGET from.")
@click.option("--factory", is_flag=True, help="TARGET is a function that returns the app.")
@click.option("--log-level", type=click.Choice(_LEVELS), default="info", show_default=True)
@click.option("--access-log", is_flag=True, help="Log every request, with its request id.")
def run(
    target: str,
    host: str,
    port: int,
    registry: str | None,
    drain_timeout: float,
    drain_delay: float,
    advertise_host: str | None,
    name: str | None,
    app_dir: str,
    factory: bool,
    log_level: str,
    access_log: bool,
) -> None:
    """Serve TARGET (module:attribute, a Service or any ASGI app) on uvicorn until SIGTERM.

    On SIGTERM or Ctrl-C the service marks itself DRAINING, deregisters, stops accepting
    connections and lets in-flight requests finish (a second signal cuts that short).
    """
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if access_log:
        logging.getLogger("distsys.service.access").setLevel(logging.DEBUG)
    svc = load_target(target, app_dir=app_dir, name=name, factory=factory)

    def announce(change: Transition) -> None:
        if change.new is State.RUNNING:
            where = ""
            if registry:
                where = f", registered in {registry}"
                if svc.registration is None:
                    where = f", not yet registered: {registry} is unreachable, retrying"
            click.echo(
                f"{svc.name} {svc.version} serving on {svc.url} (instance {svc.instance_id}{where})"
            )
            sys.stdout.flush()

    svc.lifecycle.add_listener(announce)
    try:
        svc.run(
            host,
            port,
            registry=registry,
            drain_timeout=drain_timeout,
            drain_delay=drain_delay,
            advertise_host=advertise_host,
        )
    except DistsysError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # the service failed (a startup hook, the address in use ...)
        raise click.ClickException(f"{svc.name} failed: {exc}") from None
    click.echo(f"{svc.name} stopped ({svc.state.value})")
