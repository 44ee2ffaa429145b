"""What the transport reports: frozen snapshots of a pool and of a client."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ClientStatistics", "PoolStatistics"]


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """A snapshot of one :class:`~distsys.http.ConnectionPool`.

    Attributes:
        address: the upstream's ``host:port``.
        connections: connections open now (idle, busy, or being opened).
        idle: connections waiting in the pool for a request.
        busy: connections serving a request now.
        waiting: requests queued for a connection (the pool is at ``max_connections``).
        requests: requests sent since creation.
        reused: requests sent on a connection that had served one before.
        opened: connections opened since creation.
        closed: connections closed since creation, for any reason.
        evicted: idle connections closed because they were idle too long.
        connect_errors: connection attempts that failed.
        stale_retries: requests resent on a fresh connection because a pooled one turned
            out to be closed by the server.
    """

    address: str
    connections: int
    idle: int
    busy: int
    waiting: int
    requests: int
    reused: int
    opened: int
    closed: int
    evicted: int
    connect_errors: int
    stale_retries: int


@dataclass(frozen=True, slots=True)
class ClientStatistics:
    """A snapshot of an :class:`~distsys.http.HTTPClient`: one record per pool.

    Attributes:
        pools: one :class:`PoolStatistics` per upstream address, sorted by address.
        connections: connections open now, over every pool.
        requests: requests sent since creation, over every pool.
    """

    pools: tuple[PoolStatistics, ...]
    connections: int
    requests: int
