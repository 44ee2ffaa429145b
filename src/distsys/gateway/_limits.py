"""Rate limits per route and client key: token buckets in memory or in Redis.

:class:`LocalLimiter` keeps one :class:`~distsys.resilience.TokenBucket` per key (the
client address, a header's value, or one for the route) in this process; the buckets
least recently used are dropped past ``max_keys`` (a dropped bucket comes back full,
which errs on the side of letting a request through). :class:`RedisLimiter` keeps the
buckets in Redis with the same Lua script as
:class:`~distsys.resilience.RedisRateLimiter` (one atomic refill-and-take per request,
on the server's clock), under ``{namespace}ratelimit:gateway:<route>:<key>``, so every
gateway process using the same Redis and route name shares one limit per key. Both
answer with the seconds until a token is due: 0 means granted.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Final

import xxhash

from distsys.backends import parse_url
from distsys.errors import BackendUnavailableError, MissingDependencyError
from distsys.resilience import TokenBucket
from distsys.resilience._ratelimit_redis import BUCKET_SCRIPT

if TYPE_CHECKING:
    from distsys.gateway._config import RateLimitConfig

__all__ = ["Limiter", "LocalLimiter", "RedisLimiter", "make_limiter"]

log = logging.getLogger("distsys.gateway")

_MAX_KEY: Final = 128  # longer keys are hashed


class Limiter:
    """A route's rate limit. Safe within one event loop.

    Attributes:
        remote: True when :meth:`acheck` must be used (a round trip), False when
            :meth:`check` answers at once.
        rate, burst: the bucket's refill rate (per second) and size.
    """

    remote = False

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst

    def check(self, key: bytes) -> float:
        """Take a token for ``key``: 0.0 if granted, else the seconds until one is due."""
        raise NotImplementedError

    async def acheck(self, key: bytes) -> float:
        """:meth:`check` for limiters that ask a server."""
        return self.check(key)

    def same(self, config: RateLimitConfig) -> bool:
        """Whether this limiter implements ``config`` (a reload may keep it)."""
        return False

    async def aclose(self) -> None:
        """Release what the limiter holds (idempotent)."""


class LocalLimiter(Limiter):
    """Token buckets in this process, one per key; see the module docstring."""

    def __init__(self, config: RateLimitConfig, *, max_keys: int = 65536) -> None:
        super().__init__(config.rate, _burst(config))
        self._config = config
        self._buckets: OrderedDict[bytes, TokenBucket] = OrderedDict()
        self._max_keys = max_keys

    def check(self, key: bytes) -> float:
        now = time.monotonic()
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = TokenBucket(self.rate, self.burst, now)
            if len(buckets) > self._max_keys:
                buckets.popitem(last=False)
        else:
            buckets.move_to_end(key)
        wait = bucket.wait_time(now, 1)
        if wait > 0:
            return wait
        bucket.take(now, 1)
        return 0.0

    def same(self, config: RateLimitConfig) -> bool:
        return config == self._config


class RedisLimiter(Limiter):
    """Token buckets in Redis, shared by gateway processes; see the module docstring."""

    remote = True

    def __init__(self, config: RateLimitConfig, route: str, *, timeout: float = 1.0) -> None:
        super().__init__(config.rate, _burst(config))
        assert config.redis_url is not None
        self._config = config
        self.fail_open = config.fail_open
        parsed = parse_url(config.redis_url)
        self._url = parsed.redacted()
        namespace = parsed.query.get("namespace", "distsys")
        self._prefix = f"{{{namespace}}}ratelimit:gateway:{route}:".encode()
        try:
            from redis.asyncio import Redis
            from redis.exceptions import RedisError
        except ImportError:
            raise MissingDependencyError("redis", "redis", "redis") from None
        host, port = parsed.address(6379)
        self._client: Any = Redis(
            host=host,
            port=port,
            db=int(parsed.path or 0),
            username=parsed.username,
            password=parsed.password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            protocol=2,
        )
        self._script = self._client.register_script(BUCKET_SCRIPT)
        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError)
        self._args: list[str | int] = [repr(self.rate), self.burst, 1, "0"]
        self._down = False
        self.unavailable = 0

    def check(self, key: bytes) -> float:  # pragma: no cover - the gateway awaits acheck
        raise RuntimeError("RedisLimiter answers with acheck()")

    async def acheck(self, key: bytes) -> float:
        """Take a token from the shared bucket; see :meth:`Limiter.check`.

        Raises:
            BackendUnavailableError: Redis did not answer and ``fail_open`` is off.
        """
        if len(key) > _MAX_KEY:
            key = xxhash.xxh3_128_hexdigest(key).encode()
        try:
            reply = await self._script(keys=[self._prefix + key], args=self._args)
        except self._errors as exc:
            self.unavailable += 1
            if not self.fail_open:
                raise BackendUnavailableError(self._url, str(exc) or type(exc).__name__) from exc
            if not self._down:
                self._down = True
                log.warning("rate limit: %s is unreachable (%s); letting requests through",
                            self._url, exc)  # fmt: skip
            return 0.0
        self._down = False
        return 0.0 if int(reply[0]) == 1 else max(float(reply[1]), 1e-3)

    def same(self, config: RateLimitConfig) -> bool:
        return False  # a reload reconnects (cheap, and picks up a changed server)

    async def aclose(self) -> None:
        await self._client.aclose()


def make_limiter(config: RateLimitConfig, route: str) -> Limiter:
    """Return the limiter ``config`` describes for the route named ``route``."""
    if config.redis_url is not None:
        return RedisLimiter(config, route)
    return LocalLimiter(config)


def _burst(config: RateLimitConfig) -> int:
    if config.burst is not None:
        return config.burst
    return max(1, int(-(-config.rate // 1)))
