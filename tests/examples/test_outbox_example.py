"""examples/outbox.py: the relay crashes once, and both services still converge."""

from __future__ import annotations

from tests.examples.test_examples import match, run_example


def test_outbox_converges_although_the_relay_crashed() -> None:
    out = run_example("outbox.py")
    match(r"service: placed 5 orders, each with its outbox row in one transaction", out)
    match(
        r"before the relay: orders 5 rows / 15 items, billing 0 invoices / 0 items: "
        r"not yet consistent",
        out,
    )
    match(
        r"relay: published outbox-1, outbox-2, outbox-3, then crashed before marking "
        r"outbox-3 sent",
        out,
    )
    match(
        r"relay restarted: published outbox-3, outbox-4, outbox-5 \(outbox-3 a second time\)", out
    )
    # Six messages for five events: the duplicate is skipped, not applied twice.
    match(r"billing: received 6 messages, applied 5 events, skipped 1 duplicate \(outbox-3\)", out)
    match(r"after: orders 5 rows / 15 items, billing 5 invoices / 15 items: converged", out)
