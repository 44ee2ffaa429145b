"""RedisRateLimiter against a real Redis: one limit shared by processes, on the server's clock."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from distsys.context import background, with_cancel, with_timeout
from distsys.errors import (
    ArgumentTypeError,
    BackendUnavailableError,
    CanceledError,
    InvalidArgumentError,
    MissingDependencyError,
    RateLimitedError,
)
from distsys.resilience._ratelimit_redis import RedisRateLimiter

pytestmark = pytest.mark.backend("redis")

URL = "redis://127.0.0.1:6379/0"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def server() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(host="127.0.0.1", port=6379, db=0)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def key(server: aioredis.Redis) -> AsyncIterator[str]:
    """A fresh limit key; its bucket (and a start flag) are deleted afterwards."""
    name = f"test-{uuid.uuid4().hex}"
    try:
        yield name
    finally:
        await server.delete(bucket_key(name), f"{name}:go")


def bucket_key(key: str) -> str:
    return f"{{distsys}}ratelimit:{key}"


async def server_time(server: aioredis.Redis) -> float:
    seconds, micros = await server.time()
    return seconds + micros / 1e6


async def level(server: aioredis.Redis, key: str) -> float:
    raw = await server.hget(bucket_key(key), "tokens")
    return float(raw) if raw is not None else math.inf


# ---------------------------------------------------------------------- the shared limit

CHILD = """
import asyncio, sys
import redis.asyncio as aioredis
from distsys.resilience._ratelimit_redis import RedisRateLimiter

async def main():
    url, key = sys.argv[1], sys.argv[2]
    rate, burst, n = float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    server = aioredis.Redis(host="127.0.0.1", port=6379, db=0)
    async with RedisRateLimiter(url, key, rate=rate, burst=burst) as limiter:
        print("ready", flush=True)
        for _ in range(2000):  # bounded: wait for the parent's go
            if await server.exists(key + ":go"):
                break
            await asyncio.sleep(0.005)
        first = await server.time()
        allowed = 0
        for _ in range(n):
            allowed += await limiter.allow()
            await asyncio.sleep(0.002)
        last = await server.time()
    await server.aclose()
    print(allowed, first[0] + first[1] / 1e6, last[0] + last[1] / 1e6, flush=True)

asyncio.run(main())
"""


def test_processes_sharing_a_key_never_exceed_rate_times_time_plus_burst(key: str) -> None:
    rate, burst, processes = 40.0, 10, 3
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, URL, key, str(rate), str(burst), "200"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for _ in range(processes)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        asyncio.run(_set_go(key))
        results = []
        for child in children:
            out, _ = child.communicate(timeout=60)
            allowed, first, last = out.split()
            results.append((int(allowed), float(first), float(last)))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    total = sum(allowed for allowed, _, _ in results)
    span = max(last for _, _, last in results) - min(first for _, first, _ in results)
    assert total <= rate * span + burst + 1e-6
    assert total >= burst + 0.5 * rate * span  # they did share the refill (loose)
    assert all(allowed > 0 for allowed, _, _ in results)


async def _set_go(key: str) -> None:
    client = aioredis.Redis(host="127.0.0.1", port=6379, db=0)
    try:
        await client.set(f"{key}:go", 1, ex=60)
    finally:
        await client.aclose()


async def test_clients_in_one_process_share_one_bucket(key: str, server: aioredis.Redis) -> None:
    rate, burst = 30.0, 5
    limiters = [RedisRateLimiter(URL, key, rate=rate, burst=burst) for _ in range(3)]
    start = await server_time(server)

    async def hammer(limiter: RedisRateLimiter) -> int:
        allowed = 0
        for _ in range(60):
            allowed += await limiter.allow()
            await asyncio.sleep(0.002)
        return allowed

    try:
        counts = await asyncio.gather(*(hammer(limiter) for limiter in limiters))
    finally:
        for limiter in limiters:
            await limiter.aclose()
    span = await server_time(server) - start
    assert burst <= sum(counts) <= rate * span + burst + 1e-6


async def test_the_bucket_refills_at_its_rate_on_the_servers_clock(
    key: str, server: aioredis.Redis
) -> None:
    rate = 50.0
    async with RedisRateLimiter(URL, key, rate=rate, burst=100) as limiter:
        before_refused = after_refused = 0.0
        for _ in range(300):  # drain the bucket
            before_refused = await server_time(server)
            if not await limiter.allow():
                after_refused = await server_time(server)
                break
        else:
            pytest.fail("the bucket never ran dry")
        await asyncio.sleep(1.0)  # real time: refilling is the server's business
        start = await server_time(server)
        refilled = 0
        while await limiter.allow():
            refilled += 1
        end = await server_time(server)
    # Fewer than 1 token was left when it refused; nothing is taken from it meanwhile.
    assert refilled <= 1 + rate * (end - before_refused)
    assert refilled >= math.floor(rate * (start - after_refused))
    assert 40 <= refilled <= 100


# ---------------------------------------------------------------------- waiting


async def test_aacquire_waits_for_its_reserved_tokens(key: str, server: aioredis.Redis) -> None:
    async with RedisRateLimiter(URL, key, rate=20.0, burst=1) as limiter:
        await limiter.aacquire()
        await limiter.aacquire(timeout=1.0)  # reserved at once, due ~50 ms later
        stats = limiter.statistics()
        assert (stats.granted, stats.rejected, stats.waiting) == (2, 0, 0)
        assert await level(server, key) < 0.5


async def test_a_wait_longer_than_the_timeout_is_refused_and_takes_nothing(
    key: str, server: aioredis.Redis
) -> None:
    async with RedisRateLimiter(URL, key, rate=1.0, burst=1) as limiter:
        assert await limiter.allow()
        before = await level(server, key)
        with pytest.raises(RateLimitedError) as info:
            await limiter.aacquire(timeout=0.01)
        assert info.value.name == key
        assert info.value.retry_after is not None
        assert 0.5 < info.value.retry_after <= 1.0
        assert await level(server, key) == before  # refused: nothing written
        ctx, _ = with_timeout(background(), 0.05)
        with pytest.raises(RateLimitedError):
            await limiter.aacquire(ctx=ctx)
        assert limiter.statistics().rejected == 2


async def test_a_cancelled_waiter_gives_its_tokens_back(key: str, server: aioredis.Redis) -> None:
    async with RedisRateLimiter(URL, key, rate=1.0, burst=1) as limiter:
        assert await limiter.allow()
        task = asyncio.create_task(limiter.aacquire())
        for _ in range(1000):
            if limiter.statistics().waiting:
                break
            await asyncio.sleep(0.001)
        assert await level(server, key) < -0.5  # reserved: the bucket owes a token
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert -0.5 < await level(server, key) < 1.0  # given back
        assert limiter.statistics().canceled == 1


async def test_a_waiter_whose_context_is_cancelled_gives_its_tokens_back(
    key: str, server: aioredis.Redis
) -> None:
    async with RedisRateLimiter(URL, key, rate=1.0, burst=1) as limiter:
        assert await limiter.allow()
        ctx, cancel = with_cancel(background())
        task = asyncio.create_task(limiter.aacquire(ctx=ctx))
        for _ in range(1000):
            if limiter.statistics().waiting:
                break
            await asyncio.sleep(0.001)
        cancel()
        with pytest.raises(CanceledError):
            await task
        assert await level(server, key) > -0.5


async def test_idle_buckets_expire_once_they_would_be_full(
    key: str, server: aioredis.Redis
) -> None:
    async with RedisRateLimiter(URL, key, rate=10.0, burst=5) as limiter:
        assert await limiter.allow(3)
        ttl = await server.pttl(bucket_key(key))
        assert 0 < ttl <= 300 + 1000  # 3 tokens at 10/s refill in 300 ms, plus a margin


# ---------------------------------------------------------------------- failures


async def test_an_unreachable_server_fails_closed_with_the_url_redacted() -> None:
    limiter = RedisRateLimiter("redis://:s3cret@127.0.0.1:1/0", "k", rate=1.0, burst=1)
    with pytest.raises(BackendUnavailableError) as info:
        await limiter.allow()
    assert info.value.url == "redis://:***@127.0.0.1:1/0"
    assert "s3cret" not in str(info.value)
    with pytest.raises(BackendUnavailableError):
        await limiter.aacquire()
    assert limiter.statistics().unavailable == 2
    await limiter.aclose()
    await limiter.aclose()  # idempotent


async def test_fail_open_lets_requests_through_and_counts_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = RedisRateLimiter("redis://127.0.0.1:1", "k", rate=1.0, burst=1, fail_open=True)
    assert await limiter.allow()
    assert await limiter.allow()
    await limiter.aacquire()
    stats = limiter.statistics()
    assert (stats.unavailable, stats.failed_open, stats.granted) == (3, 3, 0)
    assert sum("fail_open" in r.message for r in caplog.records) == 1  # once per outage
    await limiter.aclose()


def test_a_missing_client_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(MissingDependencyError) as info:
        RedisRateLimiter(URL, "k", rate=1.0, burst=1)
    assert info.value.extra == "redis"
    assert "pip install 'distsys[redis]'" in str(info.value)


def test_importing_the_module_does_not_import_redis() -> None:
    code = "import sys, distsys.resilience._ratelimit_redis; print('redis' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip() == "False", done.stderr


@pytest.mark.parametrize(
    ("url", "key", "options", "field", "error"),
    [
        ("http://127.0.0.1", "k", {}, "url", InvalidArgumentError),
        ("redis://127.0.0.1?db=1", "k", {}, "url", InvalidArgumentError),
        ("redis://127.0.0.1/x", "k", {}, "db", InvalidArgumentError),
        ("redis://127.0.0.1?namespace=a{b}", "k", {}, "namespace", InvalidArgumentError),
        (URL, "", {}, "key", InvalidArgumentError),
        (URL, 5, {}, "key", ArgumentTypeError),
        (URL, "k", {"rate": 0}, "rate", InvalidArgumentError),
        (URL, "k", {"burst": 0}, "burst", InvalidArgumentError),
        (URL, "k", {"timeout": 0}, "timeout", InvalidArgumentError),
        (URL, "k", {"fail_open": "yes"}, "fail_open", ArgumentTypeError),
    ],
)
def test_bad_configuration_fails_at_construction(
    url: str, key: Any, options: dict[str, Any], field: str, error: type[Exception]
) -> None:
    options = {"rate": 1.0, "burst": 2, **options}
    with pytest.raises(error) as info:
        RedisRateLimiter(url, key, **options)
    assert info.value.field == field  # type: ignore[attr-defined]


async def test_bad_arguments_fail_at_the_call(key: str) -> None:
    async with RedisRateLimiter(URL, key, rate=1.0, burst=2) as limiter:
        with pytest.raises(InvalidArgumentError, match="tokens"):
            await limiter.allow(3)
        with pytest.raises(InvalidArgumentError, match="timeout"):
            await limiter.aacquire(timeout=-1)
        with pytest.raises(ArgumentTypeError, match="ctx"):
            await limiter.aacquire(ctx=object())  # type: ignore[arg-type]
        assert repr(limiter) == f"RedisRateLimiter({URL!r}, {key!r}, rate=1.0, burst=2)"
