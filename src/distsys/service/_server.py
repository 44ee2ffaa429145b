"""uvicorn, driven programmatically: our socket, our signals, our drain timeout.

Imported only when a service is served, so ``import distsys.service`` does not import
uvicorn (whose command-line module pulls in click).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Generator
from typing import Any, cast

import uvicorn

__all__ = ["Server", "advertised_host", "bind_socket", "make_server"]


class Server(uvicorn.Server):
    """uvicorn's server, telling us when it listens and leaving signals to the service."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start as uvicorn does (lifespan startup, then listen), then say so."""
        await super().startup(sockets=sockets)
        if self.started:
            self.listening.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Install nothing: the service handles SIGTERM / SIGINT and its own drain."""
        yield


def make_server(app: Any, *, drain_timeout: float | None) -> Server:
    """Return a uvicorn server for ``app`` with httptools, lifespan on, no access log.

    uvicorn's logging configuration is left alone (``log_config=None``): the process's
    logging belongs to the application, not to a library. Proxy headers are off: the
    peer address is the connection's.
    """
    config = uvicorn.Config(
        app,
        http="httptools",
        loop="none",
        lifespan="on",
        interface="asgi3",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        # uvicorn annotates this as int but uses it as asyncio's timeout: seconds as a float.
        timeout_graceful_shutdown=cast(Any, drain_timeout),
    )
    return Server(config)


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind a listening-ready TCP socket on ``host:port`` (port 0: the kernel picks one).

    Raises:
        OSError: the address is in use or not available.
    """
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    infos.sort(key=lambda info: info[0] != socket.AF_INET)  # IPv4 first, as uvicorn does
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def advertised_host(bound: str) -> str:
    """Return the host to register for a socket bound to ``bound``.

    A wildcard address (``0.0.0.0``, ``::``) is not reachable as such: the machine's own
    address (from its host name) is registered instead, falling back to loopback.
    """
    try:
        if not ipaddress.ip_address(bound).is_unspecified:
            return bound
    except ValueError:
        return bound
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
