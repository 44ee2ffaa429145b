"""``sqlite:///path``: a durable queue in one SQLite file, shared by the processes of one machine.

Features: everything in :class:`~distsys.mq.Broker` — consumer groups, ack deadlines and
redelivery to any consumer of the group, delivery attempts counted per group, delayed
publish and delayed nack, dead letters, depth — correct while several processes publish
and consume on the file at once. It is distsys's default queue (``open_broker()`` with no
URL opens ``sqlite:///.distsys/mq.db``). The file and its directory are created on first
use; a file that is not a distsys queue (another application's database, a distsys KV
file, garbage) or was written by a newer distsys is refused and left untouched.

Connection string::

    sqlite:///relative/path.db       relative to the working directory at construction
    sqlite:////absolute/path.db      absolute
    sqlite:///.distsys/mq.db?poll_interval=0.005&busy_timeout=10

Options, as query parameters or as keyword arguments of :class:`SQLiteBroker` (a keyword
argument wins over the URL):

- ``poll_interval`` (default 0.01): seconds between two checks, while a consumer waits,
  for what other processes committed. Publishes of this process wake its consumers at
  once; the poll only bounds the latency between processes.
- ``busy_timeout`` (default 5.0): seconds to wait for another process's write lock before
  an operation raises :class:`~distsys.errors.BackendUnavailableError`.

Ordering: per topic, in order of commit — a batch keeps its order, and messages published
by one task arrive in the order published; redeliveries (expired, nacked) come before new
messages, and a delayed message joins the end of its topic once it is due, when a
consumer (or ``depth``) next looks — after what was published before that. A message
is deleted once every group of its topic has acked it; a topic no group has joined keeps
its messages (a group created later starts at the oldest kept one). Message ids are
decimal numbers, unique per topic and never reused, even after the topic empties (they
may skip numbers).

In the docs' table of backends: *ordering* — per topic, in commit order, redeliveries
first; *durability* — committed before ``publish`` returns, WAL with
``synchronous=NORMAL`` (survives any process crash; an OS crash or power loss may lose
the last transactions).

Durability: ``publish`` and ``publish_batch`` return once their transaction has
committed (a batch is atomic: all of it or none of it); acks and nacks likewise. WAL
mode with ``synchronous=NORMAL``: a crash of any process, even SIGKILL in mid-write, loses
nothing committed, and no crash or power loss corrupts the file; but a power loss or OS
crash may undo the transactions committed since the WAL was last synced (at a
checkpoint) — the same setting as the distsys KV store. The file must be on a local file
system (WAL shares memory between the processes).

Time: ack deadlines and delays are stored as readings of the injected clock, so every
process sharing a file must read the same scale. The default
:class:`~distsys.clock.MonotonicClock` (CLOCK_MONOTONIC on Linux) is system-wide on
Linux, macOS and Windows. After a reboot that clock starts again; the first process to
open the file then notices that the highest clock reading written lies in the future and
moves the stored times back: deliveries in flight become due at once (their consumers
died with the old boot), delays keep what remained of them. (If the new boot's clock has
already passed the old one when the file is first opened, the stored times are taken as
they are: in-flight deliveries wait out their deadline, delays may end early.)

Threading and cost: each broker has a worker thread with a connection of its own, and
the event loop's thread has a second connection for short work. Publishes, batches of up
to 2048 rows, claims, acks and nacks run *inline* on the loop: ``BEGIN IMMEDIATE`` on a
connection with ``busy_timeout=0`` either takes the write lock at once or fails at once,
and when it fails (another process is writing) the same work goes to the worker, which
waits for the lock with ``busy_timeout`` — so the loop never waits on a lock. WAL
checkpoints run only on the worker (the loop's connection has ``wal_autocheckpoint=0``;
one is queued after about 3000 pages of inline writes), as do ``depth``, opening the file
and creating groups. The rules, and why they hold, are in
:mod:`distsys.backends._sqlite_executor`. Writes made in one turn of the event loop are
committed together (group commit, :mod:`distsys.mq._sqlite_commit`), so tasks publishing
or acking one message each share transactions; a fetch claims up to ``prefetch``
messages in one transaction, and concurrent receives on one subscription share that
claim. A publish costs its transaction — one ``INSERT`` that numbers the message
itself, committed on its own when it is the only write — and a turn of the loop only when
other tasks are ready to run (they might add writes to the batch); the worker's round
trip (tens of microseconds, more under load) is paid only when another process holds the
lock. Acks of one fetch are deleted with one statement each for the leases and the
messages (a stale ack, rare, costs a second look).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from types import MappingProxyType
from typing import Any, Final

from distsys.backends import BackendURL
from distsys.backends._sqlite_executor import Executor
from distsys.backends._sqlite_file import file_url, storable
from distsys.backends._url import seconds_option
from distsys.clock import Clock, TimerHandle
from distsys.errors import BackendUnavailableError, InvalidArgumentError
from distsys.mq._broker import BrokerBase, BrokerStatistics, Subscription
from distsys.mq._message import HEADER_ERROR, Depth, Outgoing, RawDelivery
from distsys.mq._sqlite_commit import GroupCommit
from distsys.mq._sqlite_records import (
    AckOp,
    Claim,
    NackOp,
    PublishOp,
    Row,
    WriteOp,
    encode_headers,
)
from distsys.mq._sqlite_store import QueueStore

__all__ = ["SQLiteBroker"]

DEFAULTS: Final = MappingProxyType({"poll_interval": 0.01, "busy_timeout": 5.0})
"""The options and their defaults (see the module docs)."""


def _check_key(key: str | None) -> str | None:
    """Refuse a key SQLite cannot store as TEXT (a str with lone surrogates)."""
    if key is not None:
        storable(key, "key", "None or a non-empty str without lone surrogates")
    return key


def _weigh(op: WriteOp) -> int:
    """A write's weight for the inline path: rows, and payload in 128-byte units."""
    if isinstance(op, PublishOp):
        return len(op.rows) + op.size // 128
    if isinstance(op, AckOp):
        return sum(len(positions) for positions in op.leases.values())
    return 1


def _encode(headers: dict[str, str]) -> bytes | None:
    try:
        return encode_headers(headers)
    except (UnicodeEncodeError, TypeError, ValueError):
        raise InvalidArgumentError(
            "headers", headers, "None or a mapping of str to str without lone surrogates"
        ) from None


class SQLiteBroker(BrokerBase):
    """A message broker in a SQLite file that the processes of one machine share.

    Safe within one event loop (as its subscriptions are): open one broker per event
    loop. Not fork-safe: open one broker in each process (a broker used in a process
    other than the one that opened it raises BackendUnavailableError). The file is opened
    on first use, so a path that cannot be opened is reported by the first operation
    (``await broker.ping()`` checks it).

    As with any backend, an operation whose task is cancelled may still take effect.

    Args:
        url: ``sqlite:///path.db`` (see the module docs for its options).
        clock: the clock ack deadlines and delays run on (default: the monotonic clock);
            every process sharing the file must read the same scale.
        wall: Unix time source for publication times and deadline headers.
        poll_interval: seconds between checks for other processes' writes (0.01).
        busy_timeout: seconds to wait for another process's write lock (5.0).

    Raises:
        InvalidArgumentError: the URL is not a ``sqlite://`` file URL, it carries an unknown
            option, or an option is out of range.
    """

    path: str
    """The database file's absolute path."""

    fetch_after_acks = True  # a claim and an ack are short local transactions

    def __init__(
        self,
        url: str | BackendURL,
        *,
        clock: Clock | None = None,
        wall: Callable[[], float] = time.time,
        poll_interval: float | None = None,
        busy_timeout: float | None = None,
    ) -> None:
        given = {"poll_interval": poll_interval, "busy_timeout": busy_timeout}
        parsed, self.path, options = file_url(url, DEFAULTS, given, noun="queue")
        super().__init__(parsed, clock=clock, wall=wall)
        self._poll_interval = seconds_option("poll_interval", options["poll_interval"], zero=False)
        timeout = seconds_option("busy_timeout", options["busy_timeout"], zero=True)
        redacted = parsed.redacted()
        self._store = QueueStore(self.path, redacted, self.clock, busy_timeout=timeout)
        inline = QueueStore(self.path, redacted, self.clock, busy_timeout=0, inline=True)
        self._executor = Executor(
            redacted,
            owner="broker",
            thread_name="distsys-mq-sqlite",
            busy_timeout=timeout,
            worker_store=self._store,
            inline_store=inline,
        )
        self._writes: GroupCommit[WriteOp] = GroupCommit(
            self._executor, QueueStore.apply, self._committed, _weigh
        )
        self._changes: dict[str, int] = {}  # topic -> writes committed by this broker
        self._outside = 0  # changes by other processes noticed by the poller
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._poller: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ plumbing

    async def _write(self, op: WriteOp) -> Any:
        """Write ``op`` in the next group commit."""
        return await self._writes.write(op)

    def _committed(self, ops: Sequence[WriteOp]) -> None:
        """Wake the consumers of this process that wait on a topic just written to."""
        for op in ops:
            if not isinstance(op, AckOp):  # a publish, or a nack that hands one back
                self._changed(op.topic)

    def _changed(self, topic: str) -> None:
        self._changes[topic] = self._changes.get(topic, 0) + 1
        for waiter in self._waiters.pop(topic, ()):
            if not waiter.done():
                waiter.set_result(None)

    def _seen(self, topic: str) -> tuple[int, int]:
        """A token that changes whenever ``topic`` may have something new to claim."""
        return self._changes.get(topic, 0), self._outside

    async def _wait(self, topic: str, delay: float) -> None:
        """Wait until ``topic`` changes, another process writes, or ``delay`` clock seconds."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.setdefault(topic, set()).add(waiter)
        thread = threading.get_ident()

        def wake() -> None:  # may run on any thread (a ManualClock's or a timer's)
            if threading.get_ident() == thread:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                with suppress(RuntimeError):  # the loop is closed: nobody waits any more
                    loop.call_soon_threadsafe(wake)

        timer: TimerHandle = self.clock.call_later(delay, wake)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.ensure_future(self._poll())
        try:
            await waiter
        finally:
            timer.cancel()
            waiting = self._waiters.get(topic)
            if waiting is not None:
                waiting.discard(waiter)
                if not waiting:
                    del self._waiters[topic]

    async def _poll(self) -> None:
        """While consumers wait, wake them when another process has committed."""
        while self._waiters and not self._closed:
            await asyncio.sleep(self._poll_interval)
            try:
                changed = await self._executor.short(QueueStore.changed)
            except BackendUnavailableError:
                changed = True  # let the consumers meet the error themselves
            if changed:
                self._outside += 1
                self._wake_all()

    def _wake_all(self) -> None:
        waiters, self._waiters = self._waiters, {}
        for waiting in waiters.values():
            for waiter in waiting:
                if not waiter.done():
                    waiter.set_result(None)

    # ------------------------------------------------------------------ the hooks

    async def _publish(self, topic: str, messages: list[Outgoing]) -> list[str]:
        size = 0
        rows: list[Row] = []
        for out in messages:
            headers = _encode(out.headers) if out.headers else None
            size += len(out.payload) + (len(headers) if headers else 0)
            rows.append((out.payload, headers, _check_key(out.key), out.delay))
        op = PublishOp(topic, rows, self.wall(), self.clock.now(), size)
        ids: list[str] = await self._write(op)
        return ids

    async def _publish_one(
        self, topic: str, payload: bytes, headers: dict[str, str], key: str | None, delay: float
    ) -> str:
        encoded = _encode(headers) if headers else None
        size = len(payload) + (len(encoded) if encoded else 0)
        row = (payload, encoded, _check_key(key), delay)
        now = self.clock.now() if delay else 0.0  # the clock matters to delays only
        ids: list[str] = await self._writes.write(PublishOp(topic, [row], self.wall(), now, size))
        return ids[0]

    async def _publish_payloads(self, topic: str, payloads: list[bytes]) -> list[str]:
        rows: list[Row] = [(payload, None, None, 0.0) for payload in payloads]
        op = PublishOp(topic, rows, self.wall(), 0.0, sum(map(len, payloads)))
        ids: list[str] = await self._write(op)
        return ids

    async def _open_fetcher(self, subscription: Subscription) -> _SQLiteFetcher:
        topic, group = await self._executor.run(
            QueueStore.open_group, subscription.topic, subscription.group
        )
        return _SQLiteFetcher(self, subscription, topic, group)

    async def _create_group(self, topic: str, group: str) -> None:
        await self._executor.run(QueueStore.open_group, topic, group)

    async def _depth(self, topic: str, group: str) -> Depth:
        return await self._executor.run(QueueStore.depth, topic, group, self.clock.now())

    async def _ping(self) -> None:
        await self._executor.run(QueueStore.ping)

    def statistics(self) -> BrokerStatistics:
        """Return the broker's counters; ``backend`` holds those of its transactions.

        ``transactions`` and ``writes``: group commits and the publishes, acks and nacks
        written in them; ``inline`` and ``worker``: operations run on the event loop's
        thread and on the worker thread; ``busy``: inline attempts that found another
        connection writing and went to the worker; ``checkpoints``: WAL checkpoints
        run for the inline writes.
        """
        return self._counters()

    def _statistics(self) -> dict[str, int]:
        where = self._executor.statistics()
        return {
            "transactions": self._writes.transactions,
            "writes": self._writes.writes,
            "inline": where.inline,
            "worker": where.worker,
            "busy": where.busy,
            "checkpoints": where.checkpoints,
        }

    async def _aclose(self) -> None:
        self._wake_all()
        if self._poller is not None:
            self._poller.cancel()
        await self._executor.aclose()  # in a forked copy, nothing: the parent's to close


class _SQLiteFetcher:
    """One consumer's claims on its group (inline when the lock is free, else on the worker).

    The subscription makes one fetch at a time (its concurrent receives share it).
    """

    def __init__(
        self, broker: SQLiteBroker, subscription: Subscription, topic: int, group: int
    ) -> None:
        self._broker = broker
        self._topic_name = subscription.topic
        self._ack_wait = subscription.ack_wait
        self._topic = topic
        self._group = group
        self._probe = True  # read before locking: the last claim did not fill up
        self._closed = False

    async def fetch(self, max_messages: int, timeout: float) -> list[RawDelivery]:
        broker, clock = self._broker, self._broker.clock
        give_up = clock.now() + timeout
        while not (self._closed or broker._closed):
            seen = broker._seen(self._topic_name)
            try:
                claim: Claim = await broker._executor.short(
                    QueueStore.claim,
                    self._group,
                    self._topic,
                    self._topic_name,
                    max_messages,
                    self._ack_wait,
                    clock.now(),
                    self._probe,
                    weight=max_messages,
                )
            except BackendUnavailableError:
                if self._closed or broker._closed:
                    break
                raise
            self._probe = len(claim.deliveries) < max_messages
            if claim.deliveries:
                return claim.deliveries
            now = clock.now()
            if now >= give_up:
                break
            if broker._seen(self._topic_name) != seen:
                await asyncio.sleep(0)  # a claim may have run inline: let the loop turn
                continue  # a write landed while we claimed: look again
            wake_at = give_up if claim.next_due is None else min(give_up, claim.next_due)
            if wake_at > now:
                await broker._wait(self._topic_name, wake_at - now)
            else:
                await asyncio.sleep(0)
        return []

    async def ack(self, deliveries: Sequence[RawDelivery]) -> list[bool]:
        now = self._broker.clock.now()
        leases: dict[tuple[float, int], list[int]] = {}
        late = False  # an ack deadline has passed: that lease may be another consumer's now
        lease: tuple[float, int] | None = None
        positions: list[int] = []
        for raw in deliveries:
            position, due, token = raw.token
            if due <= now:
                late = True
                continue
            if lease is None or lease[0] != due or lease[1] != token:  # most share one
                lease = (due, token)
                positions = leases.setdefault(lease, [])
            positions.append(position)
        stale: set[tuple[int, int]] = set()
        if leases:
            stale = await self._broker._write(AckOp(self._group, self._topic, leases))
        if not (late or stale):
            return [True] * len(deliveries)
        return [
            raw.token[1] > now and (raw.token[2], raw.token[0]) not in stale for raw in deliveries
        ]

    async def nack(self, delivery: RawDelivery, delay: float) -> bool:
        position, due, token = delivery.token
        now = self._broker.clock.now()
        if due <= now:
            return False
        op = NackOp(
            self._group,
            self._topic_name,
            position,
            (due, token),
            now,
            now + delay,
            delivery.headers.get(HEADER_ERROR),
        )
        ok: bool = await self._broker._write(op)
        return ok

    async def close(self) -> None:
        self._closed = True
        self._broker._changed(self._topic_name)
