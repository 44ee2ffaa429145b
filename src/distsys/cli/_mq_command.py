"""``distsys mq``: publish, consume, watch the depth of queues, and read or replay dead letters.

Each command opens the broker at ``--url`` (default ``$DISTSYS_MQ_URL`` or
``sqlite:///.distsys/mq.db``), does its work in one event loop and closes it. The async
cores (``publish_message``, ``consume_messages``, ``queue_depths``, ``dead_letters``,
``replay_dead_letters``) take an open broker, so they are usable and testable on their
own; the commands only parse options and print.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from distsys.errors import DistsysError
from distsys.mq import (
    HEADER_ATTEMPTS,
    HEADER_DEAD_REASON,
    HEADER_ERROR,
    HEADER_GROUP,
    HEADER_REPLAY_GROUP,
    HEADER_TOPIC,
    Broker,
    Delivery,
    Depth,
    dead_letter_topic,
    open_broker,
)

__all__ = [
    "DEFAULT_URL",
    "DLQ_GROUP",
    "DeadLetter",
    "consume_messages",
    "dead_letters",
    "mq",
    "publish_message",
    "queue_depths",
    "replay_dead_letters",
]

T = TypeVar("T")

DEFAULT_URL: Final = "sqlite:///.distsys/mq.db"
DLQ_GROUP: Final = "distsys-dlq"
"""The consumer group that ``distsys mq dlq`` reads dead-letter topics with."""
DEAD_HEADERS: Final = frozenset(
    {HEADER_DEAD_REASON, HEADER_ATTEMPTS, HEADER_ERROR, HEADER_TOPIC, HEADER_GROUP}
)
BROWSE_MAX_DELIVERIES: Final = 1_000_000  # reading a dead letter again and again never kills it
PREVIEW: Final = 60  # characters of payload shown in tables

_url_option = click.option(
    "--url",
    default=lambda: os.environ.get("DISTSYS_MQ_URL", DEFAULT_URL),
    show_default=f"$DISTSYS_MQ_URL or {DEFAULT_URL}",
    help="The broker: sqlite:///file.db, redis://host:6379/0, nats://host:4222.",
)


@click.group()
def mq() -> None:
    """Publish, consume and inspect the message queue."""


def _run(url: str, work: Callable[[Broker], Awaitable[T]]) -> T:
    """Open the broker, run ``work`` on it in a new event loop, close it."""
    try:
        broker = open_broker(url)
    except DistsysError as exc:
        raise click.BadParameter(str(exc), param_hint="--url") from None

    async def run() -> T:
        try:
            return await work(broker)
        finally:
            await broker.aclose()

    try:
        return asyncio.run(run())
    except DistsysError as exc:
        raise click.ClickException(str(exc)) from None


def preview(payload: bytes, width: int = PREVIEW) -> str:
    """Return ``payload`` as text for people: UTF-8 if it is, else escaped; cut at ``width``."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = repr(payload)[2:-1]
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= width else text[: width - 1] + "…"


# ---------------------------------------------------------------------- publish


async def publish_message(
    broker: Broker,
    topic: str,
    payload: bytes,
    *,
    headers: dict[str, str] | None = None,
    key: str | None = None,
    delay: float | None = None,
) -> str:
    """Publish one message; return its id."""
    return await broker.publish(topic, payload, headers=headers, key=key, delay=delay)


def _parse_headers(values: Sequence[str]) -> dict[str, str]:
    headers = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{value!r} is not NAME=VALUE", param_hint="--header")
        headers[name] = text
    return headers


@mq.command("publish")
@_url_option
@click.option("--header", "-H", "headers", multiple=True, help="A header NAME=VALUE (repeatable).")
@click.option("--key", help="A partition key carried with the message.")
@click.option("--delay", type=click.FloatRange(min=0), help="Seconds before it may be delivered.")
@click.argument("topic")
@click.argument("payload", required=False)
def publish_command(
    url: str,
    headers: tuple[str, ...],
    key: str | None,
    delay: float | None,
    topic: str,
    payload: str | None,
) -> None:
    """Publish PAYLOAD (or standard input, when PAYLOAD is omitted or -) to TOPIC.

    Prints the new message's id once the broker has stored it.
    """
    parsed = _parse_headers(headers)
    from_stdin = payload is None or payload == "-"
    body = sys.stdin.buffer.read() if from_stdin else (payload or "").encode("utf-8")
    message_id = _run(
        url,
        lambda broker: publish_message(broker, topic, body, headers=parsed, key=key, delay=delay),
    )
    click.echo(message_id)


# ---------------------------------------------------------------------- consume


async def consume_messages(
    broker: Broker,
    topic: str,
    group: str,
    on_message: Callable[[Delivery], object],
    *,
    count: int | None = None,
    ack: bool = True,
    timeout: float | None = None,
    ack_wait: float = 30.0,
) -> int:
    """Receive messages of ``topic`` in ``group``, calling ``on_message`` for each.

    Args:
        count: stop after this many (None: no limit).
        ack: ack each message after ``on_message``; if False, leave it unacked (the
            broker delivers it again after ``ack_wait``).
        timeout: stop once no message came for this many seconds (None: wait on).

    Returns:
        How many messages were received.
    """
    received = 0
    async with broker.subscribe(
        topic, group, ack_wait=ack_wait, prefetch=min(count or 16, 16)
    ) as subscription:
        while count is None or received < count:
            delivery = await subscription.receive(timeout)
            if delivery is None:
                break
            received += 1
            on_message(delivery)
            if ack:
                await delivery.ack()
    return received


def describe(delivery: Delivery) -> str:
    """Return one line that shows a delivery: id, attempt, key, headers, payload."""
    parts = [delivery.id, f"attempt={delivery.attempt}"]
    if delivery.key is not None:
        parts.append(f"key={delivery.key}")
    parts += [f"{name}={value}" for name, value in sorted(delivery.headers.items())]
    return " ".join(parts) + "\t" + preview(delivery.payload, width=10_000)


@mq.command("consume")
@_url_option
@click.option("--group", "-g", required=True, help="The consumer group to receive in.")
@click.option("--count", "-n", type=click.IntRange(min=1), help="Stop after this many messages.")
@click.option(
    "--ack/--no-ack",
    default=True,
    show_default=True,
    help="Ack what is printed; with --no-ack it is delivered again after --ack-wait.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    help="Stop once no message came for this many seconds (default: wait on).",
)
@click.option(
    "--ack-wait",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds before an unacked message is delivered again.",
)
@click.argument("topic")
def consume_command(
    url: str,
    group: str,
    count: int | None,
    ack: bool,
    timeout: float | None,
    ack_wait: float,
    topic: str,
) -> None:
    """Print the messages of TOPIC received in consumer group GROUP (Ctrl-C to stop).

    Each line shows the id, the delivery attempt, the key and headers, a tab, and the
    payload (UTF-8, or escaped bytes).
    """

    def show(delivery: Delivery) -> None:
        click.echo(describe(delivery))

    try:
        received = _run(
            url,
            lambda broker: consume_messages(
                broker,
                topic,
                group,
                show,
                count=count,
                ack=ack,
                timeout=timeout,
                ack_wait=ack_wait,
            ),
        )
    except KeyboardInterrupt:
        return
    if not ack and received:
        click.echo(
            f"{received} message(s) left unacked: delivered again after {ack_wait:g}s",
            err=True,
        )


# ------------------------------------------------------------------------ stats


async def queue_depths(
    broker: Broker, topics: Sequence[str], groups: Sequence[str]
) -> list[tuple[str, str, Depth, int]]:
    """Return ``(topic, group, depth, dead letters)`` for every topic and group named."""
    rows = []
    for topic in topics:
        dead = (await broker.depth(dead_letter_topic(topic), DLQ_GROUP)).total
        for group in groups:
            rows.append((topic, group, await broker.depth(topic, group), dead))
    return rows


@mq.command("stats")
@_url_option
@click.option("--topic", "-t", "topics", multiple=True, help="A topic to show (repeatable).")
@click.option("--group", "-g", "groups", multiple=True, help="A group to show (repeatable).")
def stats_command(url: str, topics: tuple[str, ...], groups: tuple[str, ...]) -> None:
    """Show the depth of each --topic for each --group: waiting, in flight, delayed.

    The broker interface cannot list topics or groups, so name them; every topic is
    shown for every group. The dead-letter column counts the topic's dead letters.
    """
    if not topics or not groups:
        raise click.UsageError(
            "name at least one --topic and one --group (the broker cannot list them)"
        )
    rows = _run(url, lambda broker: queue_depths(broker, topics, groups))
    table = Table(title=f"queues at {url}")
    table.add_column("topic")
    table.add_column("group")
    for column in ("waiting", "in flight", "delayed", "total", "dead letters"):
        table.add_column(column, justify="right")
    for topic, group, depth, dead in rows:
        table.add_row(
            Text(topic),
            Text(group),
            f"{depth.waiting:,}",
            f"{depth.in_flight:,}",
            f"{depth.delayed:,}",
            f"{depth.total:,}",
            f"{dead:,}",
        )
    Console().print(table)


# -------------------------------------------------------------------------- dlq


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead letter as ``distsys mq dlq`` shows it.

    Attributes:
        id: its id in the dead-letter topic.
        topic: the topic it was published to.
        group: the consumer group that gave up on it.
        reason: why ("max deliveries", "expired", ...).
        attempts: deliveries it had.
        error: the last error its handler reported, or "".
        payload: the body.
        key: the partition key, or None.
        headers: its own headers (the dead-letter headers removed).
    """

    id: str
    topic: str
    group: str
    reason: str
    attempts: str
    error: str
    payload: bytes
    key: str | None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_delivery(cls, delivery: Delivery, topic: str) -> DeadLetter:
        """Read a delivery from ``topic``'s dead-letter topic."""
        headers = delivery.headers
        return cls(
            id=delivery.id,
            topic=headers.get(HEADER_TOPIC, topic),
            group=headers.get(HEADER_GROUP, ""),
            reason=headers.get(HEADER_DEAD_REASON, ""),
            attempts=headers.get(HEADER_ATTEMPTS, ""),
            error=headers.get(HEADER_ERROR, ""),
            payload=delivery.payload,
            key=delivery.key,
            headers={k: v for k, v in headers.items() if k not in DEAD_HEADERS},
        )


async def _browse(
    broker: Broker,
    topic: str,
    limit: int,
    wait: float,
    settle: Callable[[Delivery, DeadLetter], Awaitable[bool]],
) -> list[DeadLetter]:
    """Take up to ``limit`` dead letters of ``topic``; ``settle`` acks (True) or keeps each.

    They are held in flight while browsing, so none is seen twice; the ones kept are
    handed back at the end, to be there for the next look.
    """
    letters: list[DeadLetter] = []
    kept: list[Delivery] = []
    async with broker.subscribe(
        dead_letter_topic(topic),
        DLQ_GROUP,
        max_deliveries=BROWSE_MAX_DELIVERIES,
        prefetch=1,  # fetched beyond the limit would stay invisible for the ack deadline
    ) as subscription:
        try:
            while len(letters) < limit:
                delivery = await subscription.receive(wait)
                if delivery is None:
                    break
                letter = DeadLetter.from_delivery(delivery, topic)
                letters.append(letter)
                if not await settle(delivery, letter):
                    kept.append(delivery)
        finally:
            for delivery in kept:
                await delivery.nack()
    return letters


async def dead_letters(
    broker: Broker, topic: str, *, limit: int = 20, wait: float = 1.0
) -> list[DeadLetter]:
    """Return up to ``limit`` dead letters of ``topic``, leaving them in place.

    Args:
        wait: seconds to wait for the next one before concluding there are no more.
    """

    async def keep(delivery: Delivery, letter: DeadLetter) -> bool:
        return False

    return await _browse(broker, topic, limit, wait, keep)


async def replay_dead_letters(
    broker: Broker, topic: str, *, group: str | None = None, limit: int = 20, wait: float = 1.0
) -> list[DeadLetter]:
    """Publish dead letters of ``topic`` to their topic again, for the group that gave up.

    Each is republished without its dead-letter headers and with
    ``x-distsys-replay-group`` set to the group that gave up on it (the other groups,
    which handled it, skip it), then removed from the dead-letter topic. If it is
    published and the removal fails, it is replayed again next time: at-least-once.

    Args:
        group: replay only what this group gave up on (the rest stay).

    Returns:
        The dead letters replayed.
    """
    replayed = []

    async def replay(delivery: Delivery, letter: DeadLetter) -> bool:
        if group is not None and letter.group != group:
            return False
        headers = dict(letter.headers)
        if letter.group:
            headers[HEADER_REPLAY_GROUP] = letter.group
        await broker.publish(letter.topic, letter.payload, headers=headers, key=letter.key)
        await delivery.ack()
        replayed.append(letter)
        return True

    await _browse(broker, topic, limit, wait, replay)
    return replayed


@mq.command("dlq")
@_url_option
@click.option(
    "--replay",
    is_flag=True,
    help="Publish them to their topic again, for the group that gave up, and remove them.",
)
@click.option("--group", "-g", help="With --replay: only what this group gave up on.")
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="The most dead letters to show or replay.",
)
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Seconds to wait for more before concluding there are none.",
)
@click.argument("topic")
def dlq_command(
    url: str, replay: bool, group: str | None, limit: int, wait: float, topic: str
) -> None:
    """List the dead letters of TOPIC, or --replay them.

    A message is dead-lettered when its handlers failed on every one of its allowed
    deliveries, or its deadline passed. Listing leaves them in place.
    """
    if group is not None and not replay:
        raise click.UsageError("--group selects what to replay: use it with --replay")
    console = Console()
    if replay:
        letters = _run(
            url,
            lambda broker: replay_dead_letters(broker, topic, group=group, limit=limit, wait=wait),
        )
        for letter in letters:
            console.print(
                f"replayed {letter.id} to {letter.topic} for group {letter.group or '(any)'}",
                highlight=False,
                markup=False,
            )
        console.print(f"{len(letters)} dead letter(s) replayed", highlight=False)
        return
    letters = _run(url, lambda broker: dead_letters(broker, topic, limit=limit, wait=wait))
    if not letters:
        console.print(f"no dead letters for {topic}", highlight=False)
        return
    table = Table(title=f"dead letters of {topic}")
    for column in ("id", "group", "reason", "attempts", "last error", "payload"):
        table.add_column(column, justify="right" if column == "attempts" else "left")
    for letter in letters:
        cells = (letter.id, letter.group, letter.reason, letter.attempts, letter.error)
        table.add_row(*map(Text, cells), Text(preview(letter.payload)))
    console.print(table)
