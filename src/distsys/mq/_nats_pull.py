"""Pull requests on one durable JetStream consumer, answered into one inbox.

This is what ``PullSubscription.fetch`` of nats-py does, shaped for a queue consumer:
nats-py's fetch, once a lingering request starts to deliver, waits for the *whole* batch
or the timeout (a lone message can wait a second), and it spends a task per message.
The puller keeps at most one request open: it asks for up to ``max_messages`` with the
server holding the request (``expires``) — server-side blocking, no polling — and
returns as soon as one message is in. The rest of the batch keeps arriving into a buffer
that the next fetch drains first.

Each message carries the time its request was sent: JetStream starts a delivery's ack
timer when it sends it, which is after the request was sent, so ``sent_at + ack_wait``
never ends later than the server's deadline (see ``NATSFetcher.ack``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass
from typing import Final

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NATSSubscription

from distsys.clock import Clock

__all__ = ["PullTrouble", "Puller"]

API_PREFIX: Final = "$JS.API"
ACK_PREFIX: Final = "$JS.ACK."
GRACE: Final = 1.0
"""Seconds past a request's expiry after which its silence means it was lost."""
SHORTEST_WAIT: Final = 0.01
"""Below this, a fetch asks with ``no_wait`` (an answer at once) instead of lingering."""

_NORMAL_ENDS: Final = frozenset({"404", "408"})  # no messages / request expired
_HEARTBEAT: Final = "100"


class PullTrouble(Exception):
    """A pull request ended abnormally: the consumer refused it (a 409 status such as
    "Consumer Deleted" or "Exceeded MaxWaiting", or 503), or it was never answered (the
    consumer or the server's state was lost). The caller should check the consumer."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(slots=True)
class _Request:
    sent_at: float
    expires_at: float
    remaining: int
    no_wait: bool


class Puller:
    """One consumer instance's pull requests and the messages they bring.

    Safe within one event loop; one task fetches at a time.

    Args:
        nc: the connection (its inbox subscription lives and dies with it).
        stream: the stream name.
        consumer: the durable consumer's name.
        clock: the clock that deadlines are measured on.
    """

    def __init__(self, nc: Client, stream: str, consumer: str, clock: Clock) -> None:
        self.nc = nc
        self._next = f"{API_PREFIX}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._inbox = nc.new_inbox()
        self._clock = clock
        self._sub: NATSSubscription | None = None
        self._open: _Request | None = None
        self._orphan_base = clock.now()
        self._ready: deque[tuple[Msg, float]] = deque()
        self._trouble: str | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    async def start(self) -> None:
        """Subscribe to the inbox the requests are answered to."""
        self._sub = await self.nc.subscribe(self._inbox, cb=self._on_message)

    @property
    def buffered(self) -> int:
        """Messages received and not yet fetched."""
        return len(self._ready)

    async def fetch(
        self, max_messages: int, timeout: float, linger: float | None = None
    ) -> list[tuple[Msg, float]]:
        """Return up to ``max_messages`` (message, request sent at), waiting up to ``timeout``.

        Returns an empty list when nothing came in time. Each request lingers on the
        server at most ``linger`` seconds (default: ``timeout``); a message's deadline is
        counted from its request's start, so a shorter linger wastes less of ack_wait.

        Raises:
            PullTrouble: the request ended abnormally and nothing is buffered.
            nats.errors.Error, OSError: the request could not be sent.
        """
        clock = self._clock
        give_up = clock.now() + timeout
        linger = timeout if linger is None else linger
        first = True
        while True:
            if self._ready:
                return self._take(max_messages)
            if self._closed:
                return []
            if self._trouble is not None:
                reason, self._trouble = self._trouble, None
                raise PullTrouble(reason)
            now = clock.now()
            request = self._open
            if request is not None and now >= request.expires_at + GRACE:
                self._open = None
                self._orphan_base = min(self._orphan_base, request.sent_at)
                raise PullTrouble("a pull request was never answered")
            if request is None:
                if not first and now >= give_up - SHORTEST_WAIT:
                    return []
                request = await self._request(max_messages, min(give_up - now, linger))
            elif not first and now >= give_up:
                return []  # the open request stays: what it brings waits in the buffer
            first = False
            wake_at = request.expires_at + GRACE
            if not request.no_wait:
                wake_at = min(wake_at, give_up)
            await self._wait(wake_at - now)
            if not self._ready and request.no_wait and self._open is not request:
                return []  # the server answered "nothing now"

    def _take(self, max_messages: int) -> list[tuple[Msg, float]]:
        ready = self._ready
        if len(ready) <= max_messages:
            taken = list(ready)
            ready.clear()
            return taken
        return [ready.popleft() for _ in range(max_messages)]

    async def _request(self, batch: int, wait: float) -> _Request:
        now = self._clock.now()
        if wait < SHORTEST_WAIT:
            body = b'{"batch":%d,"no_wait":true}' % batch
            request = _Request(now, now, batch, no_wait=True)
        else:
            body = b'{"batch":%d,"expires":%d}' % (batch, int(wait * 1e9))
            request = _Request(now, now + wait, batch, no_wait=False)
        self._open = request
        try:
            await self.nc.publish(self._next, body, reply=self._inbox)
        except BaseException:
            self._open = None
            raise
        return request

    async def _wait(self, seconds: float) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        timer = self._clock.call_later(max(seconds, 0.0), lambda: _resolve(waiter))
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    async def _on_message(self, msg: Msg) -> None:
        if msg.reply.startswith(ACK_PREFIX):
            request = self._open
            if request is not None:
                sent_at = request.sent_at
                request.remaining -= 1
                if request.remaining <= 0:
                    self._open = None
            else:
                sent_at = self._orphan_base  # from a request given up on: the oldest
            self._ready.append((msg, sent_at))
        else:
            headers = msg.headers or {}
            status = headers.get("Status")
            if status is None or status == _HEARTBEAT:
                return
            self._open = None
            if status not in _NORMAL_ENDS:
                self._trouble = f"{status} {headers.get('Description', '')}".strip()
        waiter = self._waiter
        if waiter is not None:
            _resolve(waiter)

    async def close(self) -> None:
        """Stop: unsubscribe the inbox (buffered deliveries are redelivered after ack_wait)."""
        if self._closed:
            return
        self._closed = True
        self._ready.clear()
        if self._waiter is not None:
            _resolve(self._waiter)
        sub, self._sub = self._sub, None
        if sub is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):  # the connection is going or gone
                await sub.unsubscribe()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
