"""Backends chosen by URL, and the key-value-with-leases interface they share.

``parse_url`` is the one URL parser; a :class:`SchemeTable` maps a concept's schemes to
lazily imported classes (an unknown scheme names the known ones and the closest match; a
missing client library names the extra to install). ``open_kv(url)`` opens a
:class:`KV` store: ``memory://``, ``sqlite:///path.db``, ``redis://host:6379/0`` or
``etcd://host:2379``.
"""

from typing import Any

from distsys.backends._kv import KV, EventType, KVBase, KVEntry, KVEvent
from distsys.backends._memory import MemoryKV
from distsys.backends._schemes import Implementation, SchemeTable
from distsys.backends._url import BackendURL, parse_url

__all__ = [
    "KV",
    "KV_SCHEMES",
    "BackendURL",
    "EventType",
    "Implementation",
    "KVBase",
    "KVEntry",
    "KVEvent",
    "MemoryKV",
    "SchemeTable",
    "open_kv",
    "parse_url",
]

KV_SCHEMES = SchemeTable(
    "kv",
    {
        "memory": Implementation("distsys.backends._memory:MemoryKV"),
        "sqlite": Implementation("distsys.backends._sqlite:SQLiteKV"),
        "redis": Implementation("distsys.backends._redis:RedisKV", "redis", "redis"),
        "etcd": Implementation("distsys.backends._etcd:EtcdKV", "aetcd", "etcd"),
    },
)
"""The KV backends by scheme."""


def open_kv(url: str | BackendURL, **options: Any) -> KV:
    """Open the KV store at ``url``; close it with ``await kv.aclose()`` (or ``async with``).

    Args:
        url: ``memory://``, ``sqlite:///path.db``, ``redis://host:6379/0`` or
            ``etcd://host:2379``.
        **options: passed to the backend class (for example ``clock=``).

    Raises:
        UnknownSchemeError: the scheme is not one of those.
        MissingDependencyError: the client library is not installed (names the extra).
        InvalidArgumentError: the URL is malformed.
    """
    parsed, cls = KV_SCHEMES.resolve(url)
    store: KV = cls(parsed, **options)
    return store
