"""Opening a nats-py connection that fails fast at first and then reconnects."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext

from distsys.backends import BackendURL
from distsys.errors import BackendUnavailableError
from distsys.mq._nats_settings import DEFAULT_PORT, NATSSettings
from distsys.mq._nats_wire import UNAVAILABLE

__all__ = ["Connection", "open_connection", "unavailable"]

log = logging.getLogger("distsys.mq")


@dataclass(slots=True)
class Connection:
    """One nats-py connection and its JetStream context."""

    nc: Client
    js: JetStreamContext


def unavailable(url: BackendURL, exc: BaseException, doing: str) -> BackendUnavailableError:
    """Return the error to raise when ``doing`` failed with ``exc`` (the URL redacted)."""
    detail = str(exc) or type(exc).__name__
    return BackendUnavailableError(url.redacted(), f"{doing} failed: {detail}")


async def open_connection(
    url: BackendURL,
    settings: NATSSettings,
    *,
    on_reconnected: Callable[[], Awaitable[None]],
) -> Connection:
    """Connect to the server of ``url``.

    nats-py retries even a first connection ``max_reconnect_attempts`` times, waiting
    ``reconnect_time_wait`` between tries; the first connection is made with two quick
    tries, so an unreachable server fails in about ``connect_timeout``, and the
    reconnection settings are put in place once connected (nats-py reads its ``options``
    when a connection breaks).

    Raises:
        BackendUnavailableError: the server cannot be reached or refused the connection.
    """
    host, port = url.address(DEFAULT_PORT)

    async def on_error(exc: Exception) -> None:
        level = logging.DEBUG if isinstance(exc, OSError) else logging.WARNING
        log.log(level, "nats %s: %r", url, exc)

    options: dict[str, Any] = {
        "servers": [f"nats://{host}:{port}"],  # credentials apart: never in nats-py's logs
        "name": f"distsys-mq-{settings.namespace}",
        "connect_timeout": settings.connect_timeout,
        "allow_reconnect": False,
        "max_reconnect_attempts": 1,
        "reconnect_time_wait": 0,
        "ping_interval": 10,
        "max_outstanding_pings": 3,
        "error_cb": on_error,
        "reconnected_cb": on_reconnected,
    }
    if url.username is not None and url.password is not None:
        options.update(user=url.username, password=url.password)
    elif url.username is not None:
        options["token"] = url.username
    nc = Client()
    try:
        await nc.connect(**options)
    except (*UNAVAILABLE, ValueError) as exc:
        with contextlib.suppress(Exception):
            await nc.close()
        raise unavailable(url, exc, "connecting") from None
    nc.options.update(
        allow_reconnect=True,
        max_reconnect_attempts=settings.reconnect_attempts,
        reconnect_time_wait=settings.reconnect_wait,
    )
    return Connection(nc, nc.jetstream(timeout=settings.timeout))
