"""Request ids: made cheaply, carried by a Context."""

from __future__ import annotations

from distsys.context import background, with_timeout
from distsys.http import REQUEST_ID_HEADER, new_request_id, request_id, with_request_id


def test_new_ids_are_distinct_and_short() -> None:
    ids = {new_request_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) < 32 and i.isascii() for i in ids)


def test_the_context_carries_the_id_to_its_children() -> None:
    assert REQUEST_ID_HEADER == "X-Request-ID"
    root = background()
    assert request_id(root) is None
    assert request_id(None) is None
    ctx = with_request_id(root, "abc")
    child, cancel = with_timeout(ctx, 5)
    assert request_id(ctx) == request_id(child) == "abc"
    cancel()
