"""HTTPClient: a connection pool per upstream ``(host, port)``, and URLs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from distsys.errors import ArgumentTypeError, DistsysError, InvalidArgumentError
from distsys.http._options import PoolOptions
from distsys.http._pool import ConnectionPool
from distsys.http._statistics import ClientStatistics

if TYPE_CHECKING:
    from distsys.context import Context
    from distsys.http._headers import HeaderInput
    from distsys.http._request import Body
    from distsys.http._response import Response

__all__ = ["HTTPClient", "split_url"]

_URL_ACCEPTED = "an http:// URL such as 'http://127.0.0.1:8080/path?q=1' (TLS is not supported)"


def split_url(url: str) -> tuple[str, int, str]:
    """Split an ``http://`` URL into ``(host, port, target)``.

    The port defaults to 80 and the target to ``/``; a fragment is dropped.

    Raises:
        InvalidArgumentError: not an ``http://`` URL with a host (``https://``, user
            info and other schemes are refused).
    """
    if not isinstance(url, str):
        raise ArgumentTypeError("url", url, _URL_ACCEPTED)
    if not url[:7].lower() == "http://":
        raise InvalidArgumentError("url", url, _URL_ACCEPTED)
    rest = url[7:].split("#", 1)[0]
    end = len(rest)
    for mark in "/?":
        at = rest.find(mark)
        if 0 <= at < end:
            end = at
    authority, target = rest[:end], rest[end:]
    if target.startswith("?"):
        target = "/" + target
    target = target or "/"
    if "@" in authority:
        raise InvalidArgumentError("url", url, _URL_ACCEPTED, detail="user info is not supported")
    port_text = ""
    if authority.startswith("["):
        close = authority.find("]")
        host = authority[1:close] if close > 0 else ""
        after = authority[close + 1 :] if close > 0 else ""
        if after:
            if not after.startswith(":"):
                raise InvalidArgumentError("url", url, _URL_ACCEPTED)
            port_text = after[1:]
    else:
        host, colon, port_text = authority.partition(":")
        if colon and not port_text:
            raise InvalidArgumentError("url", url, _URL_ACCEPTED, detail="empty port")
    if not host:
        raise InvalidArgumentError("url", url, _URL_ACCEPTED, detail="no host")
    port = 80
    if port_text:
        if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
            raise InvalidArgumentError("url", url, _URL_ACCEPTED, detail="bad port")
        port = int(port_text)
    return host, port, target


class HTTPClient:
    """HTTP/1.1 requests over pooled keep-alive connections, one pool per upstream.

    ``await client.request("GET", "http://host:port/path", ctx=ctx)`` — or the faster
    ``client.pool(host, port)`` kept by the caller, then ``await pool.request(...)`` —
    returns a :class:`~distsys.http.Response`. Every pool shares the limits given here
    (each limit applies per upstream). Pools live until :meth:`aclose`.

    Safe within one event loop; not thread-safe. Use one client per loop.

    Args:
        max_connections, max_idle, idle_timeout, connect_timeout, max_header_bytes,
        max_headers, read_buffer, clock: the limits of every pool; see
        :class:`~distsys.http.ConnectionPool`.

    Raises:
        InvalidArgumentError / ArgumentTypeError: a limit is invalid (the message names it).
    """

    __slots__ = ("_closed", "_options", "_pools")

    def __init__(self, **limits: Any) -> None:
        self._options = PoolOptions(**limits)
        self._pools: dict[tuple[str, int], ConnectionPool] = {}
        self._closed = False

    def pool(self, host: str, port: int) -> ConnectionPool:
        """Return the pool of ``(host, port)``, creating it on first use."""
        pool = self._pools.get((host, port))
        if pool is None:
            if self._closed:
                raise DistsysError("the HTTP client is closed")
            pool = self._pools[(host, port)] = ConnectionPool(host, port, options=self._options)
        return pool

    async def request(
        self,
        method: str | bytes,
        url: str | tuple[str, int, str],
        headers: HeaderInput = None,
        body: Body = None,
        *,
        ctx: Context | None = None,
    ) -> Response:
        """Send one request; see :meth:`ConnectionPool.request`.

        Args:
            url: an ``http://`` URL, or ``(host, port, target)``.

        Raises:
            InvalidArgumentError: the URL is not acceptable; and see
                :meth:`ConnectionPool.request`.
        """
        if isinstance(url, tuple):
            host, port, target = url
        else:
            host, port, target = split_url(url)
        return await self.pool(host, port).request(method, target, headers, body, ctx=ctx)

    def statistics(self) -> ClientStatistics:
        """Return one snapshot per pool, and totals."""
        pools = tuple(sorted((p.statistics() for p in self._pools.values()), key=_by_address))
        return ClientStatistics(
            pools=pools,
            connections=sum(p.connections for p in pools),
            requests=sum(p.requests for p in pools),
        )

    async def aclose(self) -> None:
        """Close every pool and its connections. Idempotent."""
        self._closed = True
        pools = list(self._pools.values())
        self._pools.clear()
        for pool in pools:
            await pool.aclose()

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    async def __aenter__(self) -> HTTPClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<HTTPClient pools={len(self._pools)}>"


def _by_address(stats: Any) -> str:
    return str(stats.address)
