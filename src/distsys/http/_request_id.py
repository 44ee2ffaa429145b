"""The request id: one id per logical request, carried in a Context and a header.

The first hop that has none makes one; every hop after forwards it as ``X-Request-ID``
(retries of a request keep its id), and a service puts the id it received into the
Context of the request it serves, with :func:`with_request_id`, so its own calls
forward it again.
"""

from __future__ import annotations

import itertools
import os
from typing import Final

from distsys.context import Context, with_value

__all__ = ["REQUEST_ID_HEADER", "new_request_id", "request_id", "with_request_id"]

REQUEST_ID_HEADER: Final = "X-Request-ID"
"""The HTTP header that carries the request id."""


class _RequestIdKey:
    """The Context key of the request id (a private class: no collisions)."""


_PREFIX: Final = os.urandom(6).hex()  # per process: ids from different processes differ
_counter = itertools.count(1)


def new_request_id() -> str:
    """Return a new request id: 12 hex digits for the process, a dash, a counter in hex.

    Cheap (no uuid4 per request) and unique across the processes of a system with
    overwhelming probability.
    """
    return f"{_PREFIX}-{next(_counter):x}"


def request_id(ctx: Context | None) -> str | None:
    """Return the request id bound in ``ctx``, or None."""
    if ctx is None:
        return None
    value = ctx.value(_RequestIdKey)
    return value if isinstance(value, str) else None


def with_request_id(ctx: Context, request_id: str) -> Context:
    """Derive a context that carries ``request_id`` (for the calls made while serving)."""
    return with_value(ctx, _RequestIdKey, request_id)
