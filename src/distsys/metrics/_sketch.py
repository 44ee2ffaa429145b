"""LogSketch: a mergeable quantile sketch with a relative error bound (DDSketch's mapping).

With ``gamma = (1 + a) / (1 - a)``, a value ``x > 0`` is counted in bucket
``k = ceil(log_gamma(x))``, so ``gamma**(k-1) < x <= gamma**k``. A quantile is answered
with its bucket's midpoint in relative terms, ``v = 2 * gamma**k / (gamma + 1)``, and
``|v - x| / x <= (gamma - 1) / (gamma + 1) = a`` for every ``x`` in the bucket. Buckets
are integers, so merging two sketches adds their counts key by key.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.metrics._checks import check_accuracy, check_count, check_quantile, check_real
from distsys.metrics._store import CollapsingStore

__all__ = ["LogSketch", "SketchStatistics"]

_INF: Final = float("inf")
_VALUE_ACCEPTED: Final = "a finite number >= 0"
# The mapping uses an accuracy smaller than the promised one by this factor, so the ~1e-13
# relative rounding of log() and exp() can never push an estimate past the promised bound.
_MARGIN: Final = 1e-9
_log: Final = math.log
_ceil: Final = math.ceil


@dataclass(frozen=True, slots=True)
class SketchStatistics:
    """A snapshot of a :class:`LogSketch` (or of a rolling window of them).

    ``mean``, ``min``, ``max`` and the percentiles are None while the sketch is empty.
    ``min`` and ``max`` are exact; ``p50``/``p90``/``p99`` are within the sketch's
    relative accuracy of the true values (rank ``floor(q * (count - 1))``). ``buckets`` is
    the number of counters in memory; ``collapsed`` tells that the lowest values were
    folded together to stay within ``max_buckets``, so low quantiles may read too high.
    """

    count: int
    sum: float
    mean: float | None
    min: float | None
    max: float | None
    p50: float | None
    p90: float | None
    p99: float | None
    buckets: int
    collapsed: bool


class LogSketch:
    """Quantiles of a stream of non-negative numbers, within a relative error, mergeable.

    A DDSketch-style sketch: each value ``x > 0`` is counted in the logarithmic bucket
    ``ceil(log_gamma(x))`` with ``gamma = (1 + a) / (1 - a)``, zeros in a count of their
    own. ``quantile(q)`` returns a value within relative error ``a`` of the true value of
    rank ``floor(q * (count - 1))`` in the sorted data (the lower quantile), for every
    ``q`` in [0, 1]; ``q = 0`` and ``q = 1`` return the exact min and max. Negative values
    are refused: latencies, sizes and durations are never negative. The bound holds for
    normal floats (>= 2.2e-308); subnormal values are counted but may be estimated less
    precisely.

    Merging is exact: ``a.merge(b)`` leaves ``a`` answering every quantile as a sketch of
    both data sets would (``sum`` may differ in the last bits, as float sums do).

    Memory is bounded by ``max_buckets`` counters. At 1% the default 2048 spans a factor
    of about 10**17 between the smallest and largest value (a nanosecond to a decade); when
    the data spans more, the lowest buckets are folded into one, so the largest values
    keep their accuracy and the smallest read too high (DDSketch's "collapsing lowest").
    ``statistics().collapsed`` says when that happened.

    Not thread-safe: use one from one thread or one event loop, or guard it.
    :class:`RollingPercentiles` does the guarding for its sketches.

    Args:
        relative_accuracy: ``a``, in (0, 1); 0.01 is 1%.
        max_buckets: the most counters the sketch keeps (>= 1).

    Raises:
        InvalidArgumentError: an argument is out of range.
        ArgumentTypeError: an argument is not a number.
    """

    __slots__ = (
        "_accuracy",
        "_count",
        "_log_gamma",
        "_max",
        "_max_buckets",
        "_min",
        "_multiplier",
        "_store",
        "_sum",
        "_upper",
        "_zeros",
    )

    def __init__(self, relative_accuracy: float = 0.01, *, max_buckets: int = 2048) -> None:
        self._accuracy = accuracy = check_accuracy(relative_accuracy)
        self._max_buckets = check_count("max_buckets", max_buckets, 1)
        mapped = accuracy * (1.0 - _MARGIN)
        self._log_gamma = math.log1p(2.0 * mapped / (1.0 - mapped))  # ln(gamma)
        self._multiplier = 1.0 / self._log_gamma
        self._upper = 1.0 + mapped  # estimate of bucket k: gamma**(k-1) * (1 + a)
        self._store = CollapsingStore(self._max_buckets)
        self._zeros = 0
        self._count = 0
        self._sum = 0.0
        self._min = _INF
        self._max = -_INF

    @property
    def relative_accuracy(self) -> float:
        """The promised bound on the relative error of a quantile."""
        return self._accuracy

    @property
    def max_buckets(self) -> int:
        """The most counters the sketch keeps."""
        return self._max_buckets

    @property
    def count(self) -> int:
        """How many values were added."""
        return self._count

    @property
    def sum(self) -> float:
        """The sum of the values added."""
        return self._sum

    @property
    def min(self) -> float | None:
        """The smallest value added, or None if empty."""
        return self._min if self._count else None

    @property
    def max(self) -> float | None:
        """The largest value added, or None if empty."""
        return self._max if self._count else None

    def add(self, value: float) -> None:
        """Count ``value`` (O(1), except when the bucket range grows).

        Raises:
            ArgumentTypeError: ``value`` is not an int or a float.
            InvalidArgumentError: ``value`` is negative, NaN or infinite.
        """
        if value.__class__ is not float:
            value = check_real("value", value, _VALUE_ACCEPTED)
        elif value - value:  # NaN for NaN and ±inf, 0.0 for every finite float
            raise InvalidArgumentError("value", value, _VALUE_ACCEPTED)
        if value > 0.0:
            self._store.add(_ceil(_log(value) * self._multiplier))
        elif value == 0.0:
            self._zeros += 1
        else:
            raise InvalidArgumentError("value", value, _VALUE_ACCEPTED)
        self._count += 1
        self._sum += value
        if value < self._min:
            self._min = value
        if value > self._max:
            self._max = value

    def merge(self, *others: LogSketch) -> None:
        """Add every value counted by ``others`` to this sketch (they are unchanged).

        Merging several sketches in one call is faster than one call per sketch.

        Raises:
            ArgumentTypeError: one of ``others`` is not a LogSketch.
            InvalidArgumentError: one has another accuracy or ``max_buckets``.
        """
        for other in others:
            if not isinstance(other, LogSketch):
                raise ArgumentTypeError("other", other, "a LogSketch")
            if (other._accuracy, other._max_buckets) != (self._accuracy, self._max_buckets):
                raise InvalidArgumentError(
                    "other",
                    other,
                    f"a LogSketch with relative_accuracy={self._accuracy} and "
                    f"max_buckets={self._max_buckets}",
                )
        self._store.merge([other._store for other in others])
        for other in others:
            self._zeros += other._zeros
            self._count += other._count
            self._sum += other._sum
            self._min = min(self._min, other._min)
            self._max = max(self._max, other._max)

    def quantile(self, q: float) -> float | None:
        """Return the value at quantile ``q``, or None if the sketch is empty.

        The estimate is within ``relative_accuracy`` of the true value of 0-based rank
        ``floor(q * (count - 1))`` in the sorted data; ``q=0`` gives the min, ``q=1`` the max.

        Raises:
            InvalidArgumentError: ``q`` is outside [0, 1].
            ArgumentTypeError: ``q`` is not a number.
        """
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Iterable[float]) -> list[float | None]:
        """Return :meth:`quantile` of each of ``qs``, in one pass over the buckets."""
        checked = [check_quantile(q) for q in qs]
        n = self._count
        if not n:
            return [None] * len(checked)
        ranks = [math.floor(q * (n - 1)) for q in checked]
        zeros = self._zeros
        keys = self._store.keys_at_ranks([rank - zeros for rank in ranks])
        return [self._estimate(rank, key, n) for rank, key in zip(ranks, keys, strict=True)]

    def _estimate(self, rank: int, key: int, n: int) -> float:
        if rank == 0:
            return self._min
        if rank == n - 1:
            return self._max
        if rank < self._zeros:
            return 0.0
        try:
            estimate = math.exp((key - 1) * self._log_gamma) * self._upper
        except OverflowError:
            estimate = _INF
        # Clamping can only move the estimate closer: every value lies in [min, max].
        return min(max(estimate, self._min), self._max)

    def statistics(self) -> SketchStatistics:
        """Return count, sum, mean, exact min and max, p50, p90, p99 and memory use."""
        n = self._count
        p50, p90, p99 = self.quantiles((0.5, 0.9, 0.99))
        return SketchStatistics(
            count=n,
            sum=self._sum,
            mean=self._sum / n if n else None,
            min=self.min,
            max=self.max,
            p50=p50,
            p90=p90,
            p99=p99,
            buckets=len(self._store.counts),
            collapsed=self._store.collapsed,
        )

    def copy(self) -> LogSketch:
        """Return an independent copy."""
        twin = LogSketch(self._accuracy, max_buckets=self._max_buckets)
        twin.merge(self)
        return twin

    def clear(self) -> None:
        """Forget every value."""
        self._store.clear()
        self._zeros = self._count = 0
        self._sum = 0.0
        self._min, self._max = _INF, -_INF

    def __repr__(self) -> str:
        return (
            f"LogSketch(relative_accuracy={self._accuracy}, max_buckets={self._max_buckets}, "
            f"count={self._count})"
        )
