"""One ``redis://`` subscription's side: fetch on a connection of its own, ack, nack.

A fetch takes one of two paths. The :data:`~distsys.mq._redis_lua.FETCH` script does
the upkeep — moves due delayed messages into the stream, takes back this group's due
nacks, reclaims deliveries idle past ``ack_wait`` (an ``XAUTOCLAIM`` scan resumed from
its cursor, started afresh every ``min(ack_wait / 2, 1 s)``), trims the stream every
``trim_interval`` — and reads new entries, in a compact reply that parses several times
faster than a nested one. It runs when the last fetch came back full (a backlog), after
this consumer nacked, and otherwise every :data:`MAINTAIN_EVERY` seconds, or sooner when
it knows something falls due. In between, a caught-up subscription waits in the server,
``XREADGROUP ... BLOCK``, for new entries: one round trip per fetch, as for a plain
consumer. While a backlog lasts and the application handles each batch quickly (in less
than a tenth of ``ack_wait``), the next batch is read while it handles the current one,
so up to twice ``prefetch`` deliveries are out to the subscription. A dropped connection
is retried with backoff (up to :data:`MAX_BACKOFF`); a group the server lost is created
again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from itertools import accumulate
from typing import TYPE_CHECKING, Any, Final

import msgspec
from redis.exceptions import ResponseError

from distsys.backends._redis import _UNAVAILABLE
from distsys.clock import sleep
from distsys.errors import BackendUnavailableError
from distsys.mq._broker import Subscription
from distsys.mq._message import RawDelivery

if TYPE_CHECKING:
    from distsys.mq._redis import RedisBroker

__all__ = ["MAX_BACKOFF", "MAX_BLOCK", "RedisFetcher"]

log = logging.getLogger("distsys.mq")

MAX_BLOCK: Final = 5.0
"""The longest one blocking read waits in the server, in seconds."""
MAINTAIN_EVERY: Final = 0.2
"""The longest a fetching subscription goes without running the FETCH script, in
seconds: how late it may notice a delayed message or another consumer's nack due."""
INITIAL_BACKOFF: Final = 0.05
MAX_BACKOFF: Final = 2.0
"""The longest pause between two reconnection attempts of a subscription, in seconds."""

_PASSING: Final = ("OOM", "BUSY", "LOADING", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")
"""Server errors that a subscription waits out, as it does a lost connection."""
_SCAN_DONE: Final = b"0-0"
_TICK: Final = 0.001  # the resolution of BLOCK (ms): a shorter wait is no wait
_decode_headers: Final = msgspec.json.Decoder(dict[str, str]).decode


class _MalformedError(Exception):
    pass


_Entry = tuple[bytes, Mapping[bytes, bytes], int, bytes]
"""A stream entry to deliver: stream id, fields, attempt, extra headers (JSON or b"")."""


def _items(lengths: bytes, blob: bytes) -> list[bytes]:
    """Split the FETCH script's items (see :data:`~distsys.mq._redis_lua.FETCH`)."""
    ends = list(accumulate(map(int, lengths.split())))
    return [blob[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]


class RedisFetcher:
    """The :class:`~distsys.mq.Fetcher` of one ``redis://`` subscription."""

    def __init__(self, broker: RedisBroker, subscription: Subscription) -> None:
        self._broker = broker
        self._sub = subscription
        topic, group = subscription.topic, subscription.group
        self._stream = broker._key("stream", topic)
        self._fetch_keys = [
            self._stream,
            broker._key("delayed", topic),
            broker._key("retry", topic, group),
            broker._key("nacked", topic, group),
        ]
        self._ack_keys = [self._stream, self._fetch_keys[3]]
        self._nack_keys = [self._stream, *self._fetch_keys[2:]]
        self._create_keys = [self._stream, broker._key("ack-wait", topic)]
        self._delayed_prefix = broker._key("delayed-msg", topic) + ":"
        self._retry_prefix = broker._key("retry", topic) + ":"
        self._ack_wait_ms = str(max(1, round(subscription.ack_wait * 1000)))
        namespace = re.sub(r"[^\w.:-]", "_", broker._namespace)  # CLIENT SETNAME's rules
        self._conn = broker._connect_single(f"distsys-mq:{namespace}:{subscription.consumer}")
        self._ready = False  # whether the group is known to exist
        self._backlog = False  # whether the last fetch came back full
        self._ahead: asyncio.Future[list[RawDelivery]] | None = None  # reading on
        self._handed_at = -math.inf  # when the last deliveries were handed over
        self._maintain_at = 0.0  # when the FETCH script must run again
        self._cursor = _SCAN_DONE
        self._next_scan = 0.0
        self._scan_every = min(subscription.ack_wait / 2, 1.0)
        self._next_trim = 0.0
        self._backoff = INITIAL_BACKOFF
        self._retry_at = 0.0
        self._closed = False

    # ------------------------------------------------------------------ fetch

    async def fetch(self, max_messages: int, timeout: float) -> list[RawDelivery]:
        """Return up to ``max_messages`` deliveries, waiting up to ``timeout`` for one."""
        clock = self._broker.clock
        give_up = clock.now() + timeout
        while not self._closed:
            now = clock.now()
            if now < self._retry_at:  # backing off after a lost connection
                await sleep(min(self._retry_at, give_up) - now, clock)
                if clock.now() < self._retry_at:
                    return []
                continue
            try:
                found = await self._fetch_once(max_messages, give_up)
            except (*_UNAVAILABLE, BackendUnavailableError) as exc:
                if self._closed:
                    break
                self._lost(exc)
                continue
            except ResponseError as exc:
                if self._closed:
                    break
                if str(exc).startswith("NOGROUP"):
                    self._ready = False  # the stream or group was deleted (a restarted server?)
                elif str(exc).startswith(_PASSING):
                    self._lost(exc)
                else:
                    raise
                continue
            except Exception:
                if self._closed:  # closed under a blocked read
                    break
                raise
            self._backoff = INITIAL_BACKOFF
            if found:
                self._handed_at = clock.now()
                return found
            if clock.now() + _TICK >= give_up:
                return []
        return []

    async def _fetch_once(self, max_messages: int, give_up: float) -> list[RawDelivery]:
        broker, sub, clock = self._broker, self._sub, self._broker.clock
        if not self._ready:
            await broker._create_script(
                keys=self._create_keys, args=[sub.group, self._ack_wait_ms], client=self._conn
            )
            self._ready = True
        if self._ahead is not None:  # the batch read while the last one was handled
            ahead, self._ahead = self._ahead, None
            found = await ahead
        else:
            now = clock.now()
            due = now + _TICK >= self._maintain_at  # within a tick: now, rather than spin
            if not (due or self._backlog or self._cursor != _SCAN_DONE):
                found = None
            else:
                found = await self._maintain(max_messages, now)
        if found is not None:
            self._backlog = len(found) >= max_messages
            # Read on while this batch is handled, if the last one was handled quickly:
            # the deadlines of what is read ahead run meanwhile.
            quick = clock.now() - self._handed_at < self._sub.ack_wait / 10
            if self._backlog and quick:
                self._ahead = asyncio.ensure_future(self._maintain(max_messages, clock.now()))
            if found:
                return found
        # Caught up: wait in the server for new entries, until maintenance is due.
        block = min(min(give_up, self._maintain_at) - clock.now(), MAX_BLOCK)
        if block < _TICK:
            return []
        reply: Any = await self._conn.xreadgroup(
            sub.group,
            sub.consumer,
            {self._stream: ">"},
            count=max_messages,
            block=max(1, round(block * 1000)),
        )
        if not reply:
            return []
        # [[stream, entries]] (RESP2), or {stream: entries} with redis-py's unified replies
        entries = next(iter(reply.values())) if isinstance(reply, dict) else reply[0][1]
        self._backlog = len(entries) >= max_messages
        return await self._deliveries(
            (sid, fields, 1, b"") for sid, fields in entries if sid is not None
        )

    async def _maintain(self, max_messages: int, now: float) -> list[RawDelivery]:
        """Run the FETCH script: due delays and nacks, a reclaim scan if due, new entries."""
        sub = self._sub
        scan = self._cursor != _SCAN_DONE or now >= self._next_scan
        trim = now >= self._next_trim
        if trim:
            self._next_trim = now + self._broker._trim_interval
        cursor, wake, lengths, blob, again = await self._broker._fetch_script(
            keys=self._fetch_keys,
            args=[
                sub.group,
                sub.consumer,
                max_messages,
                self._ack_wait_ms if scan else -1,
                self._cursor,
                self._delayed_prefix,
                self._retry_prefix if trim else "",
            ],
            client=self._conn,
        )
        if cursor:
            self._cursor = cursor
            if cursor == _SCAN_DONE:
                self._next_scan = now + self._scan_every
        due = now + MAINTAIN_EVERY if wake < 0 else now + min(MAINTAIN_EVERY, wake / 1000)
        self._maintain_at = min(due, self._next_scan)
        return await self._unpack(_items(lengths, blob), again) if blob else []

    def _lost(self, exc: BaseException) -> None:
        self._broker._reconnects += 1
        log.warning(
            "%s: subscription %s lost its connection or was refused (%s); retrying in %.2g s",
            self._broker.url,
            self._sub.consumer,
            exc,
            self._backoff,
        )
        self._retry_at = self._broker.clock.now() + self._backoff
        self._backoff = min(self._backoff * 2, MAX_BACKOFF)

    async def _unpack(self, items: list[bytes], again: int) -> list[RawDelivery]:
        """Turn the FETCH script's items into deliveries: ``again`` redeliveries (id,
        attempt, extra headers, count, fields), then new entries (id, count, fields)."""
        topic, out = self._sub.topic, []
        i = 0
        while i < len(items):
            sid = items[i]
            if again:
                again -= 1
                attempt, extra, count, i = int(items[i + 1]), items[i + 2], int(items[i + 3]), i + 4
            elif items[i + 1] == b"2" and items[i + 2] == b"p":  # the usual: a payload only
                published_at = int(sid[: sid.index(b"-")]) / 1000
                out.append(
                    RawDelivery(sid.decode(), topic, items[i + 3], {}, None, 1, published_at, sid)
                )
                i += 4
                continue
            else:
                attempt, extra, count, i = 1, b"", int(items[i + 1]), i + 2
            flat = items[i : i + count]
            i += count
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            out += await self._deliveries([(sid, fields, attempt, extra)])
        return out

    async def _deliveries(self, entries: Iterable[_Entry]) -> list[RawDelivery]:
        out = []
        for sid, fields, attempt, extra in entries:
            try:
                out.append(self._decode(sid, fields, attempt, extra))
            except _MalformedError as exc:
                await self._reject(sid, fields, attempt, str(exc))
        return out

    def _decode(
        self, sid: bytes, fields: Mapping[bytes, bytes], attempt: int, extra: bytes
    ) -> RawDelivery:
        payload = fields.get(b"p")
        if payload is None:
            raise _MalformedError("no payload field 'p'")
        try:
            stamp = fields[b"t"] if b"t" in fields else sid[: sid.index(b"-")]
            published_at = int(stamp) / 1000
            headers = _decode_headers(fields[b"h"]) if b"h" in fields else {}
            if extra:
                headers.update(_decode_headers(extra))
            key = fields[b"k"].decode() if b"k" in fields else None
            message_id = fields[b"i"].decode() if b"i" in fields else sid.decode()
        except (ValueError, msgspec.DecodeError) as exc:  # UnicodeDecodeError is a ValueError
            raise _MalformedError(str(exc)) from None
        return RawDelivery(
            message_id, self._sub.topic, payload, headers, key, attempt, published_at, sid
        )

    async def _reject(
        self, sid: bytes, fields: Mapping[bytes, bytes], attempt: int, why: str
    ) -> None:
        """Dead-letter an entry distsys did not write (its fields as headers, for people)."""
        headers = {}
        for name, value in fields.items():
            if name != b"p":
                headers[name.decode(errors="replace")] = value.decode(errors="replace")
        raw = RawDelivery(
            sid.decode(), self._sub.topic, fields.get(b"p", b""), headers, None, attempt, 0.0, sid
        )
        await self._sub._dead_letter(raw, "malformed", why)

    # ------------------------------------------------------------------ settle

    async def ack(self, deliveries: Sequence[RawDelivery]) -> list[bool]:
        """Ack in one script; False for each delivery that is no longer this one."""
        broker, sub = self._broker, self._sub
        pairs = b" ".join([b"%s %d" % (raw.token, raw.attempt) for raw in deliveries])
        args: list[bytes | str] = [sub.group, sub.consumer, pairs]
        try:
            reply = await broker._call(lambda: broker._ack_script(keys=self._ack_keys, args=args))
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                return [False] * len(deliveries)  # the group is gone, and its deliveries
            raise
        return [ok == 49 for ok in reply]  # b"1101": 1 acked, 0 stale

    async def nack(self, delivery: RawDelivery, delay: float) -> bool:
        """File the delivery for redelivery to the group after ``delay`` seconds."""
        broker, sub = self._broker, self._sub
        kept = {k: v for k, v in delivery.headers.items() if k.startswith("x-distsys-")}
        args = [
            sub.group,
            sub.consumer,
            delivery.token,
            delivery.attempt,
            round(delay * 1000),
            msgspec.json.encode(kept) if kept else b"",
        ]
        try:
            ok = await broker._call(lambda: broker._nack_script(keys=self._nack_keys, args=args))
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                return False
            raise
        if ok:
            self._maintain_at = 0.0  # look for it at once (and learn when it is due)
        return bool(ok)

    async def close(self) -> None:
        """Stop fetching and drop the connection (a blocked read ends with it)."""
        if self._closed:
            return
        self._closed = True
        if self._ahead is not None:  # what it read ahead is redelivered after ack_wait
            ahead, self._ahead = self._ahead, None
            ahead.cancel()
            await asyncio.wait([ahead])  # without raising what it ended with
            if not ahead.cancelled():
                ahead.exception()  # a read that failed as it was dropped: of no interest
        await self._conn.aclose()
        broker, sub = self._broker, self._sub
        if self._backoff > INITIAL_BACKOFF:
            return  # the server is not answering: do not wait for it to say goodbye
        try:  # tidy, not needed: the trim deletes idle empty consumers anyway
            await broker._leave_script(keys=[self._stream], args=[sub.group, sub.consumer])
        except (*_UNAVAILABLE, ResponseError) as exc:
            log.debug("%s: could not delete consumer %s: %s", broker.url, sub.consumer, exc)
