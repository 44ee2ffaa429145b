"""The outbox pattern: two services that agree in the end, though no transaction spans them.

The orders service must record an order *and* tell billing about it. Writing to its
database and then publishing is not safe (a crash in between loses the event), nor is
publishing first (a crash in between announces an order that does not exist). So it
writes the order and an *outbox* row in one local SQLite transaction; a relay publishes
outbox rows to the broker and marks them sent. If the relay dies between the publish and
the mark, it publishes that row again when it restarts: the event is never lost, but may
arrive twice. Billing applies events idempotently — a Deduplicator keyed on the event id
skips the second copy — so both sides converge: BASE-style eventual consistency.

Here the relay crashes once, right after publishing event 3. Run it with
``python examples/outbox.py``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tempfile
from pathlib import Path

from distsys.backends import open_kv
from distsys.mq import Broker, Consumer, Deduplicator, Delivery, idempotent, open_broker

ORDERS = [("tea", 1), ("cups", 2), ("kettle", 3), ("sugar", 4), ("spoons", 5)]
CRASH_AFTER = "outbox-3"


class RelayCrashed(Exception):
    """The relay died between publishing an event and marking it sent."""


class OrderService:
    """Writes each order and its event in one transaction."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path)
        self.db.executescript(
            """
            CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT, qty INTEGER);
            CREATE TABLE outbox (id INTEGER PRIMARY KEY, topic TEXT, payload BLOB,
                                 sent INTEGER NOT NULL DEFAULT 0);
            """
        )

    def place_order(self, item: str, qty: int) -> None:
        with self.db:  # one transaction: both rows, or neither
            cursor = self.db.execute("INSERT INTO orders (item, qty) VALUES (?, ?)", (item, qty))
            event = {"order": cursor.lastrowid, "item": item, "qty": qty}
            self.db.execute(
                "INSERT INTO outbox (topic, payload) VALUES ('orders', ?)",
                (json.dumps(event).encode(),),
            )

    def totals(self) -> tuple[int, int]:
        rows, items = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(qty), 0) FROM orders"
        ).fetchone()
        return rows, items


async def relay(db: sqlite3.Connection, broker: Broker, *, crash_after: str | None) -> list[str]:
    """Publish the unsent outbox rows in order, marking each sent after its publish."""
    published = []
    rows = db.execute("SELECT id, topic, payload FROM outbox WHERE sent = 0 ORDER BY id")
    for row_id, topic, payload in rows.fetchall():
        event_id = f"outbox-{row_id}"
        await broker.publish(topic, payload, headers={"event-id": event_id})
        published.append(event_id)
        if event_id == crash_after:
            raise RelayCrashed(", ".join(published))
        with db:
            db.execute("UPDATE outbox SET sent = 1 WHERE id = ?", (row_id,))
    return published


class Billing:
    """The other service: one invoice per order, applied once per event."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute("CREATE TABLE invoices (order_id INTEGER PRIMARY KEY, qty INTEGER)")
        self.received: list[str] = []

    async def apply(self, delivery: Delivery) -> None:
        event = json.loads(delivery.payload)
        with self.db:
            self.db.execute(
                "INSERT INTO invoices (order_id, qty) VALUES (?, ?)", (event["order"], event["qty"])
            )

    def totals(self) -> tuple[int, int]:
        rows, items = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(qty), 0) FROM invoices"
        ).fetchone()
        return rows, items


def compare(orders: OrderService, billing: Billing) -> str:
    (o_rows, o_items), (b_rows, b_items) = orders.totals(), billing.totals()
    verdict = "converged" if (o_rows, o_items) == (b_rows, b_items) else "not yet consistent"
    return (
        f"orders {o_rows} rows / {o_items} items, "
        f"billing {b_rows} invoices / {b_items} items: {verdict}"
    )


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        orders, billing = OrderService(directory / "orders.db"), Billing(directory / "billing.db")
        broker = open_broker(f"sqlite:///{directory / 'mq.db'}")
        dedup_store = open_kv(f"sqlite:///{directory / 'dedup.db'}")
        try:
            await broker.create_group("orders", "billing")
            for item, qty in ORDERS:
                orders.place_order(item, qty)
            print(
                f"service: placed {len(ORDERS)} orders, each with its outbox row in one transaction"
            )
            print(f"before the relay: {compare(orders, billing)}")

            first: list[str] = []
            try:
                first = await relay(orders.db, broker, crash_after=CRASH_AFTER)
            except RelayCrashed as crash:
                first = str(crash).split(", ")
                print(f"relay: published {crash}, then crashed before marking {CRASH_AFTER} sent")
            again = await relay(orders.db, broker, crash_after=None)
            print(f"relay restarted: published {', '.join(again)} ({CRASH_AFTER} a second time)")

            dedup = Deduplicator(dedup_store, key=lambda d: d.headers["event-id"], window=3600)

            @idempotent(dedup)
            async def apply_once(delivery: Delivery) -> None:
                await billing.apply(delivery)

            caught_up = asyncio.Event()

            async def handle(delivery: Delivery) -> None:
                billing.received.append(delivery.headers["event-id"])
                await apply_once(delivery)
                if len(billing.received) == len(first) + len(again):
                    caught_up.set()  # every message the relay published has been handled

            consumer = Consumer(broker, "orders", "billing", handle, concurrency=1)
            running = asyncio.ensure_future(consumer.run())
            await caught_up.wait()
            consumer.stop()  # graceful: the last message is acked before run() returns
            await running
            stats = dedup.statistics()
            duplicates = sorted({e for e in billing.received if billing.received.count(e) > 1})
            print(
                f"billing: received {len(billing.received)} messages, applied {stats.completed} "
                f"events, skipped {stats.duplicates} duplicate ({', '.join(duplicates)})"
            )
            print(f"after: {compare(orders, billing)}")
        finally:
            await broker.aclose()
            await dedup_store.aclose()
            orders.db.close()
            billing.db.close()


if __name__ == "__main__":
    asyncio.run(main())
