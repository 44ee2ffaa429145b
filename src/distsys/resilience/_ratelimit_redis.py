"""RedisRateLimiter: one token bucket in Redis, shared by every process that names its key.

Features: the same bucket, reservation model and deadline rules as
:class:`~distsys.resilience.RateLimiter` (first come, first served across processes;
a wait that would not end before the caller's deadline is refused at once with
``RateLimitedError`` and its exact ``retry_after``). Each request is ONE atomic Lua
script (sent once, then run by its SHA with ``EVALSHA``; redis-py loads it again if the
server lost it) that refills the bucket and takes from it, reading the time with
``redis.call('TIME')``: the server's clock is the only clock, so the clients' clocks
never matter. A bucket key expires once it would be full again (a missing key *is* a
full bucket), so idle limits cost no memory.

Connection string::

    redis://[user:password@]host[:port][/db][?namespace=name]

The bucket lives at ``{namespace}ratelimit:<key>`` (``namespace`` defaults to
``distsys``, like the ``redis://`` KV store's).

When Redis cannot be reached: ``fail_open=False`` (the default, fail closed) raises
:class:`~distsys.errors.BackendUnavailableError` (with the URL's password masked), so an
outage is seen rather than silently let through or turned into "rate limited";
``fail_open=True`` lets the request through, logs a warning once per outage and counts
it in ``statistics().failed_open``: for limits that protect nothing critical.

Needs the ``redis`` client library (``pip install 'distsys[redis]'``), imported only
when a limiter is created.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from distsys.backends._redis_url import DEFAULT_PORT, parse_redis_url
from distsys.backends._url import BackendURL
from distsys.clock import Clock
from distsys.context import Context
from distsys.errors import (
    ArgumentTypeError,
    BackendUnavailableError,
    DeadlineExceededError,
    InvalidArgumentError,
    MissingDependencyError,
    RateLimitedError,
)
from distsys.resilience._ratelimit_bucket import TokenBucket
from distsys.resilience._retry_checks import (
    check_clock,
    check_context,
    check_seconds,
    check_timeout,
    check_tokens,
)
from distsys.resilience._retry_wait import sleep_async

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["BUCKET_SCRIPT", "RedisRateLimiter", "RedisRateLimiterStatistics"]

_log = logging.getLogger(__name__)


BUCKET_SCRIPT: Final = r"""
-- One token bucket, refilled and taken from atomically, on the server's clock.
-- KEYS[1]: the bucket, a HASH {tokens, ts (microseconds)}; a missing bucket is full.
-- ARGV: rate (tokens/s), burst, tokens to take (negative: give back reserved tokens),
--       the most seconds the taker will wait (-1: no limit; 0: only tokens there now).
-- Returns {1, wait}: reserved, due in wait seconds; {0, wait}: refused, due in wait.
-- wait is a string: a Lua number would reply as a truncated integer.
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local level = burst
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
if state[1] then
  level = tonumber(state[1])
  local elapsed = (now - tonumber(state[2])) / 1000000
  if elapsed > 0 then level = math.min(burst, level + elapsed * rate) end
end
local wait = 0
if n < 0 then
  level = math.min(burst, level - n)
else
  if level < n then wait = (n - level) / rate end
  if wait > 0 and max_wait >= 0 and wait > max_wait then
    return {0, string.format('%.17g', wait)}
  end
  level = level - n
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', level),
           'ts', string.format('%.0f', now))
local full_in_ms = math.ceil((burst - level) / rate * 1000)  -- then the key may go
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', full_in_ms + 1000))
return {1, string.format('%.17g', wait)}
"""


@dataclass(frozen=True, slots=True)
class RedisRateLimiterStatistics:
    """What a :class:`RedisRateLimiter` has done (in this process).

    Attributes:
        key: the limit's key (without the namespace).
        rate: tokens added per second.
        burst: the most tokens the bucket holds.
        granted: requests granted (at once, or after waiting).
        rejected: requests refused (``allow()`` False, or ``RateLimitedError``).
        waiting: tasks waiting for their tokens now.
        canceled: waiters that gave up and returned their tokens.
        unavailable: requests that found Redis unreachable.
        failed_open: of those, requests let through because of ``fail_open=True``.
    """

    key: str
    rate: float
    burst: int
    granted: int
    rejected: int
    waiting: int
    canceled: int
    unavailable: int
    failed_open: int


class RedisRateLimiter:
    """A token bucket in Redis: ``rate`` per second and bursts of ``burst``, for all processes.

    Every limiter, in any process, built with the same URL, key, rate and burst shares one
    limit. ``await allow()`` answers at once; ``await aacquire()`` waits (in this task)
    until its reserved tokens are due. See the module docstring for the data model and
    what happens when Redis is down.

    Safe within one event loop: any number of its tasks may share one limiter.

    Args:
        url: ``redis://[user:password@]host[:port][/db][?namespace=name]``.
        key: the limit's name; limiters with the same key share a bucket.
        rate: tokens added per second (finite, > 0).
        burst: the most tokens the bucket holds (an int >= 1).
        fail_open: when Redis is unreachable, let requests through (True) instead of
            raising ``BackendUnavailableError`` (False, the default).
        timeout: seconds to connect and to wait for each reply (> 0).
        clock: the clock this process sleeps on while waiting for due tokens (the bucket
            itself runs on the Redis server's clock).

    Raises:
        MissingDependencyError: the ``redis`` client library is not installed.
        InvalidArgumentError: a malformed URL or an option out of range (naming the field).
        ArgumentTypeError: a value is of the wrong kind.
    """

    def __init__(
        self,
        url: str | BackendURL,
        key: str,
        *,
        rate: float,
        burst: int,
        fail_open: bool = False,
        timeout: float = 1.0,
        clock: Clock | None = None,
    ) -> None:
        parsed, namespace, db = parse_redis_url(url)
        if not isinstance(key, str):
            raise ArgumentTypeError("key", key, "a non-empty str")
        if not key:
            raise InvalidArgumentError("key", key, "a non-empty str")
        self._bucket = TokenBucket(rate, burst)  # validates rate and burst; no state used
        if not isinstance(fail_open, bool):
            raise ArgumentTypeError("fail_open", fail_open, "a bool")
        seconds = check_seconds("timeout", timeout)
        try:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import ConnectionError as RedisConnectionError
            from redis.exceptions import TimeoutError as RedisTimeoutError
        except ImportError:
            raise MissingDependencyError("redis", "redis", "redis") from None
        self.url = parsed
        self.key = key
        self.fail_open = fail_open
        self._clock = check_clock(clock)
        self._redis_key = f"{{{namespace}}}ratelimit:{key}"
        host, port = parsed.address(DEFAULT_PORT)
        self._client: Redis = Redis(
            host=host,
            port=port,
            db=db,
            username=parsed.username,
            password=parsed.password,
            socket_timeout=seconds,
            socket_connect_timeout=seconds,
            # One retry heals a pooled connection that died with a restarted server. A
            # take repeated after a lost reply takes twice: it can only under-grant.
            retry=Retry(NoBackoff(), 1),
            protocol=2,
        )
        self._script = self._client.register_script(BUCKET_SCRIPT)
        self._errors: tuple[type[BaseException], ...] = (
            RedisConnectionError,
            RedisTimeoutError,
            OSError,
        )
        self._closed = False
        self._down = False
        self._granted = self._rejected = self._waiting = self._canceled = 0
        self._unavailable = self._failed_open = 0

    @property
    def rate(self) -> float:
        """Tokens added per second."""
        return self._bucket.rate

    @property
    def burst(self) -> int:
        """The most tokens the bucket holds."""
        return self._bucket.burst

    async def _run(self, tokens: int, max_wait: float) -> tuple[bool, float]:
        """Run the bucket script: ``(reserved, wait)``; raise BackendUnavailableError."""
        args: list[str | int] = [repr(self._bucket.rate), self._bucket.burst, tokens]
        args.append(repr(max_wait))
        try:
            reply: Any = await self._script(keys=[self._redis_key], args=args)
        except self._errors as exc:
            self._unavailable += 1
            raise BackendUnavailableError(
                self.url.redacted(), str(exc) or type(exc).__name__
            ) from exc
        self._down = False
        return int(reply[0]) == 1, float(reply[1])

    def _let_through(self, exc: BackendUnavailableError) -> None:
        """Count a request let through by ``fail_open``; warn once per outage."""
        self._failed_open += 1
        if not self._down:
            self._down = True
            _log.warning("rate limit %r: %s; letting requests through (fail_open)", self.key, exc)

    async def _give_back(self, tokens: int) -> None:
        """Return reserved tokens; best effort (a lost refund only under-grants)."""
        with contextlib.suppress(BackendUnavailableError):
            await self._run(-tokens, -1.0)

    async def allow(self, tokens: int = 1) -> bool:
        """Take ``tokens`` if the shared bucket has them now; never wait.

        Raises:
            BackendUnavailableError: Redis is unreachable and ``fail_open`` is False.
            InvalidArgumentError: ``tokens`` is not in [1, burst].
        """
        check_tokens(tokens, self._bucket.burst)
        try:
            reserved, _ = await self._run(tokens, 0.0)
        except BackendUnavailableError as exc:
            if not self.fail_open:
                raise
            self._let_through(exc)
            return True
        if reserved:
            self._granted += 1
        else:
            self._rejected += 1
        return reserved

    async def aacquire(
        self, tokens: int = 1, *, ctx: Context | None = None, timeout: float | None = None
    ) -> None:
        """Take ``tokens``, sleeping this task until they are due (first come, first served).

        Args:
            tokens: how many tokens to take (1 to ``burst``).
            ctx: the caller's context: the wait must end before its deadline.
            timeout: the most seconds to wait (None: no limit but the context's).

        Raises:
            RateLimitedError: the wait needed is longer than ``timeout`` or would reach the
                context's deadline (nothing is taken; ``retry_after`` is that wait).
            ContextError: ``ctx`` had ended, or ended while waiting (tokens returned).
            asyncio.CancelledError: the task was cancelled while waiting (tokens returned).
            BackendUnavailableError: Redis is unreachable and ``fail_open`` is False.
        """
        check_tokens(tokens, self._bucket.burst)
        limit = check_timeout(timeout)
        ctx = check_context(ctx)
        if ctx is not None:
            err = ctx.err()
            if err is not None:
                raise err
            remaining = ctx.remaining()
            if remaining is not None:
                limit = min(limit, remaining)
        try:
            reserved, wait = await self._run(tokens, -1.0 if limit == float("inf") else limit)
        except BackendUnavailableError as exc:
            if not self.fail_open:
                raise
            self._let_through(exc)
            return
        if reserved and ctx is not None and wait > 0:
            remaining = ctx.remaining()
            if remaining is not None and wait >= remaining:  # the round trip used it up
                await self._give_back(tokens)
                reserved = False
        if not reserved:
            self._rejected += 1
            raise RateLimitedError(self.key, wait)
        if wait <= 0:
            self._granted += 1
            return
        self._waiting += 1
        granted = False
        try:
            granted = await sleep_async(wait, self._clock, ctx)
        finally:
            self._waiting -= 1
            if granted:
                self._granted += 1
            else:
                self._canceled += 1
                await self._give_back(tokens)
        if not granted:
            err = None if ctx is None else ctx.err()
            raise err if err is not None else DeadlineExceededError()

    def statistics(self) -> RedisRateLimiterStatistics:
        """Return this process's counts since creation."""
        return RedisRateLimiterStatistics(
            key=self.key,
            rate=self._bucket.rate,
            burst=self._bucket.burst,
            granted=self._granted,
            rejected=self._rejected,
            waiting=self._waiting,
            canceled=self._canceled,
            unavailable=self._unavailable,
            failed_open=self._failed_open,
        )

    async def aclose(self) -> None:
        """Close the connections (idempotent)."""
        if not self._closed:
            self._closed = True
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"RedisRateLimiter({self.url.redacted()!r}, {self.key!r}, rate={self.rate!r}, "
            f"burst={self.burst})"
        )
