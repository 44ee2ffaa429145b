"""``distsys mq``: publish, consume, stats and dead letters.

The commands run through CliRunner against a SQLite file, as separate invocations share
it (on memory:// each invocation would see its own empty broker). The async cores are
also tested directly on memory://.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from distsys.cli import main
from distsys.cli._mq_command import (
    DLQ_GROUP,
    consume_messages,
    dead_letters,
    describe,
    preview,
    publish_message,
    queue_depths,
    replay_dead_letters,
)
from distsys.mq import (
    HEADER_ERROR,
    HEADER_REPLAY_GROUP,
    Delivery,
    MemoryBroker,
    dead_letter_topic,
    open_broker,
)

HAVE_SQLITE = importlib.util.find_spec("distsys.mq._sqlite") is not None
needs_sqlite = pytest.mark.skipif(
    not HAVE_SQLITE,
    reason="the sqlite:// broker (distsys.mq._sqlite) has not landed; CLI commands run as "
    "separate invocations need a broker they share, which memory:// is not",
)
PIPED = {"FORCE_COLOR": None, "TTY_COMPATIBLE": "0", "TTY_INTERACTIVE": None, "COLUMNS": "120"}


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/mq.db"


@pytest.fixture
def mq(url: str) -> CliRunner:
    return CliRunner(env={**PIPED, "DISTSYS_MQ_URL": url})


def run(runner: CliRunner, *args: str, input: bytes | str | None = None, code: int = 0) -> Result:
    result = runner.invoke(main, ["mq", *args], input=input)
    assert result.exit_code == code, result.output
    return result


async def make_dead_letter(url: str, topic: str, group: str, payload: bytes, error: str) -> None:
    broker = open_broker(url)
    try:
        await broker.create_group(topic, group)
        await broker.publish(topic, payload, headers={"trace": "t-1"}, key="k1")
        async with broker.subscribe(topic, group, max_deliveries=1) as sub:
            delivery = await sub.receive(timeout=5)
            assert delivery is not None
            await delivery.nack(error=error)
    finally:
        await broker.aclose()


# ------------------------------------------------------------------ commands


@needs_sqlite
def test_publish_then_consume_in_separate_invocations(mq: CliRunner) -> None:
    first = run(mq, "publish", "orders", '{"id": 1}', "-H", "trace=abc", "--key", "c1")
    second = run(mq, "publish", "orders", input=b"from stdin\n")
    third = run(mq, "publish", "orders", "-", input=b"\xff\x00")
    ids = [r.stdout.strip() for r in (first, second, third)]
    assert len(set(ids)) == 3
    out = run(mq, "consume", "orders", "--group", "billing", "--count", "3").stdout
    lines = out.splitlines()
    assert lines[0] == f'{ids[0]} attempt=1 key=c1 trace=abc\t{{"id": 1}}'
    assert lines[1] == f"{ids[1]} attempt=1\tfrom stdin\\n"
    assert lines[2] == f"{ids[2]} attempt=1\t\\xff\\x00"
    # Acked: nothing more for billing.
    assert run(mq, "consume", "orders", "-g", "billing", "--timeout", "0.2").stdout == ""


@needs_sqlite
def test_consume_without_ack_leaves_the_messages_in_flight(mq: CliRunner) -> None:
    run(mq, "publish", "orders", "x")
    result = run(mq, "consume", "orders", "-g", "g", "--no-ack", "--count", "1")
    assert "attempt=1" in result.stdout
    assert "1 message(s) left unacked: delivered again after 30s" in result.stderr
    stats = run(mq, "stats", "--topic", "orders", "--group", "g").stdout
    assert re.search(r"orders\s*│\s*g\s*│\s*0\s*│\s*1\s*│\s*0\s*│\s*1\s*│\s*0", stats), stats
    result = run(mq, "consume", "orders", "-g", "g", "--ack-wait", "0.01", "--timeout", "0.2")
    assert result.stdout == ""  # still in flight for the first consumer's 30 s


@needs_sqlite
def test_stats_shows_waiting_delayed_and_dead_letters_per_topic_and_group(
    mq: CliRunner, url: str
) -> None:
    asyncio.run(make_dead_letter(url, "orders", "billing", b"poison", "ValueError: bad"))
    run(mq, "publish", "orders", "now")
    run(mq, "publish", "orders", "later", "--delay", "3600")
    run(mq, "publish", "audit", "x")
    out = run(mq, "stats", "-t", "orders", "-t", "audit", "-g", "billing").stdout
    assert re.search(r"orders\s*│\s*billing\s*│\s*1\s*│\s*0\s*│\s*1\s*│\s*2\s*│\s*1", out), out
    assert re.search(r"audit\s*│\s*billing\s*│\s*1\s*│\s*0\s*│\s*0\s*│\s*1\s*│\s*0", out), out


def test_stats_needs_topics_and_groups_named(mq: CliRunner) -> None:
    result = run(mq, "stats", "--topic", "orders", code=2)
    assert "name at least one --topic and one --group" in result.output


@needs_sqlite
def test_dlq_lists_dead_letters_and_leaves_them_in_place(mq: CliRunner, url: str) -> None:
    asyncio.run(make_dead_letter(url, "orders", "billing", b'{"id": 9}', "ValueError: bad id"))
    for _ in range(2):  # listing twice shows the same letter: reading does not remove it
        out = run(mq, "dlq", "orders", "--wait", "0.2").stdout
        assert "dead letters of orders" in out
        row = next(line for line in out.splitlines() if "billing" in line)
        for cell in ("billing", "max deliveries", "1", "ValueError: bad id", '{"id": 9}'):
            assert cell in row, row
    assert "no dead letters for audit" in run(mq, "dlq", "audit", "--wait", "0").stdout


@needs_sqlite
def test_dlq_replay_republishes_for_the_group_that_gave_up(mq: CliRunner, url: str) -> None:
    asyncio.run(make_dead_letter(url, "orders", "billing", b"retry me", "TimeoutError"))
    out = run(mq, "dlq", "orders", "--replay", "--group", "shipping", "--wait", "0.2").stdout
    assert "0 dead letter(s) replayed" in out  # shipping gave up on nothing
    out = run(mq, "dlq", "orders", "--replay", "--wait", "0.2").stdout
    assert re.search(r"replayed \S+ to orders for group billing", out), out
    assert "1 dead letter(s) replayed" in out
    assert "no dead letters" in run(mq, "dlq", "orders", "--wait", "0.2").stdout
    line = run(mq, "consume", "orders", "-g", "billing", "-n", "1").stdout
    assert f"{HEADER_REPLAY_GROUP}=billing" in line
    assert "key=k1" in line
    assert "trace=t-1" in line
    assert HEADER_ERROR not in line  # the dead-letter headers are gone
    assert line.endswith("\tretry me\n")


def test_dlq_group_needs_replay(mq: CliRunner) -> None:
    result = run(mq, "dlq", "orders", "--group", "billing", code=2)
    assert "use it with --replay" in result.output


def test_a_bad_url_is_named(mq: CliRunner) -> None:
    result = run(mq, "publish", "--url", "kafka://localhost", "orders", "x", code=2)
    assert "--url" in result.output
    assert "kafka" in result.output


@needs_sqlite
def test_broker_errors_are_reported_without_a_traceback(mq: CliRunner) -> None:
    result = run(mq, "publish", "no spaces", "x", code=1)
    assert "Error: topic='no spaces' is not accepted" in result.output
    result = run(mq, "publish", "orders", "x", "-H", "novalue", code=2)
    assert "'novalue' is not NAME=VALUE" in result.output


def test_help_lists_the_subcommands() -> None:
    result = CliRunner().invoke(main, ["mq", "--help"])
    assert result.exit_code == 0
    for name in ("publish", "consume", "stats", "dlq"):
        assert name in result.output
    assert "mq" in CliRunner().invoke(main, ["--help"]).output


# ------------------------------------------------------------- the async cores


async def test_the_cores_on_memory() -> None:
    async with MemoryBroker() as broker:
        await broker.create_group("orders", "audit")
        await broker.create_group("orders", "billing")
        message_id = await publish_message(broker, "orders", b"a", headers={"h": "1"}, key="k")
        seen: list[Delivery] = []
        got = await consume_messages(broker, "orders", "billing", seen.append, timeout=0.01)
        assert got == 1
        assert describe(seen[0]) == f"{message_id} attempt=1 key=k h=1\ta"
        rows = await queue_depths(broker, ["orders"], ["billing", "audit"])
        assert [(t, g, d.total, dead) for t, g, d, dead in rows] == [
            ("orders", "billing", 0, 0),
            ("orders", "audit", 1, 0),
        ]

        async with broker.subscribe("orders", "audit", max_deliveries=1) as sub:
            delivery = await sub.receive(timeout=0)
            assert delivery is not None
            await delivery.nack(error="KeyError: 'sku'")
        listed = await dead_letters(broker, "orders", wait=0)
        assert [(d.group, d.reason, d.attempts, d.error) for d in listed] == [
            ("audit", "max deliveries", "1", "KeyError: 'sku'")
        ]
        assert listed[0].headers == {"h": "1"}
        assert (await broker.depth(dead_letter_topic("orders"), DLQ_GROUP)).waiting == 1
        replayed = await replay_dead_letters(broker, "orders", wait=0)
        assert [d.id for d in replayed] == [listed[0].id]
        assert await dead_letters(broker, "orders", wait=0) == []
        again: list[Delivery] = []
        await consume_messages(broker, "orders", "billing", again.append, timeout=0.01)
        assert again == []  # a replay for audit is skipped by billing
        await consume_messages(broker, "orders", "audit", again.append, timeout=0.01)
        assert [(d.payload, d.headers[HEADER_REPLAY_GROUP]) for d in again] == [(b"a", "audit")]


@pytest.mark.parametrize(
    ("payload", "width", "shown"),
    [
        (b"plain", 60, "plain"),
        (b"two\nlines", 60, "two\\nlines"),
        (b"\xff\xfe", 60, "\\xff\\xfe"),
        (b"x" * 100, 10, "xxxxxxxxx…"),
    ],
)
def test_preview(payload: bytes, width: int, shown: str) -> None:
    assert preview(payload, width) == shown
