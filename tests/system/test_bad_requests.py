"""Bad requests get the right status from the gateway while it goes on serving others.

Oversized headers or too many of them (431), bodies over the limit, declared or streamed
(413), malformed JSON (400, from the service, relayed), an unknown route (404), malformed
HTTP (400) and a slowloris client that sends its headers a line at a time (408 after the
header timeout) — all while a load runs through the same gateway without a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from tests.service.wire import Connection, Reply, request
from tests.system.conftest import WAIT, Load, System, eventually

CATALOG: dict[str, Any] = {"name": "catalog", "prefix": "/api", "service": "catalog",
                           "strip_prefix": True, "timeout": "10s"}  # fmt: skip
LIMITS = {"max_header_bytes": "4KiB", "max_body_bytes": "64KiB", "header_timeout": "2s"}


async def raw(port: int, data: bytes) -> Reply:
    """Send raw bytes on a new connection; return the answer."""
    conn = await Connection.open(port)
    try:
        conn.writer.write(data)
        await conn.writer.drain()
        return await conn.read()
    finally:
        await conn.close()


async def slowloris(port: int) -> tuple[int, float]:
    """Send a request's headers a line every 0.2 s; return the status and seconds taken."""
    began = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /api/items/1 HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        answer = asyncio.ensure_future(reader.read())
        for i in range(100):  # 20 s at most: the gateway must give up long before
            done, _ = await asyncio.wait({answer}, timeout=0.2)
            if done:
                break
            with contextlib.suppress(OSError):
                writer.write(b"X-Slow-%d: a\r\n" % i)
        text = await asyncio.wait_for(answer, WAIT)
        return int(text.split(b" ", 2)[1]), time.monotonic() - began
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def error_of(reply: Reply, status: int) -> str:
    assert reply.status == status, reply
    body = reply.json()
    assert body["status"] == status
    assert body["request_id"] == reply.headers["x-request-id"]
    error: str = body["error"]
    return error


async def test_bad_requests_are_refused_while_others_are_served(system: System) -> None:
    replica = await system.start_service()
    await system.start_gateway(CATALOG, limits=LIMITS)
    await system.until_gateway_picks("catalog", {replica.instance_id})
    load = Load(system.url("/api/items/5"), rate=50).start()
    slow = asyncio.create_task(slowloris(system.port))
    try:
        await eventually(lambda: load.totals.sent > 0)
        port = system.port

        good = await request(port, "GET", "/api/items/2")  # served while slowloris trickles
        assert good.status == 200
        assert not slow.done()

        big_header = {"X-Big": "x" * 8192}
        many_headers = {f"X-Many-{i}": "y" for i in range(120)}  # max_headers is 100
        error_of(await request(port, "GET", "/api/items/1", headers=big_header), 431)

        error_of(await request(port, "GET", "/api/items/1", headers=many_headers), 431)
        # Refused at once from Content-Length, without reading the body.
        declared = b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n"
        error_of(await raw(port, declared), 413)
        # A chunked body is counted as it streams in; the connection stays usable.
        chunk = b"x" * (100 * 1024)
        chunked = b"POST /api/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        conn = await Connection.open(port)
        try:
            conn.writer.write(chunked + b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk))
            error_of(await conn.read(), 413)
            assert (await conn.request("GET", "/api/items/4")).json()["item"] == 4
        finally:
            await conn.close()

        json_type = {"Content-Type": "application/json"}
        malformed = await request(
            port, "POST", "/api/echo", body=b'{"message": ', headers=json_type
        )
        assert error_of(malformed, 400).startswith("malformed JSON")  # the service's, relayed
        unknown = await request(port, "POST", "/api/echo", json_body={"message": 1})
        assert error_of(unknown, 400)
        assert unknown.json()["field"] == "message"
        assert (await request(port, "POST", "/api/echo", json_body={"message": "hi"})).json() == {
            "message": "hi"
        }

        assert "no route" in error_of(await request(port, "GET", "/nowhere"), 404)
        error_of(await raw(port, b"NOT HTTP AT ALL\r\n\r\n"), 400)

        status, took = await asyncio.wait_for(slow, WAIT + 20)
        assert status == 408
        assert took >= 1.5  # after the 2 s header timeout (measured loosely), not at once

        sent = load.totals.sent
        await eventually(lambda: load.totals.sent > sent)
        totals = await load.stop()
    finally:
        load.cancel()
        slow.cancel()
    assert totals.failed == 0, str(totals)
    stats = await system.admin("/stats")
    assert stats["routes"]["(unmatched)"]["total"]["4xx"] >= 1  # the unknown route
