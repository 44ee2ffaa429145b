"""RollingCounter: several named event counts over the last N buckets, read in O(1)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import add

from distsys.clock import Clock
from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.metrics._ring import BucketRing

__all__ = ["CounterBucket", "CounterStatistics", "RollingCounter"]

_FIELDS_ACCEPTED = "a non-empty sequence of distinct, non-empty str names"
_AMOUNT_ACCEPTED = "an int >= 0 (a bool counts as 0 or 1)"


@dataclass(frozen=True, slots=True)
class CounterStatistics:
    """A snapshot of a :class:`RollingCounter`: one total per field, read at one instant.

    ``stats["failures"]`` reads a total by name; ``covered`` is the seconds the window has
    been recording (see :meth:`RollingWindow.rate <distsys.metrics.RollingWindow.rate>`).
    """

    fields: tuple[str, ...]
    totals: tuple[int, ...]
    covered: float

    def __getitem__(self, field: str) -> int:
        """Return the total of ``field``; raise KeyError for an unknown name."""
        try:
            return self.totals[self.fields.index(field)]
        except ValueError:
            raise KeyError(field) from None

    def rate(self, field: str) -> float:
        """Return the total of ``field`` per second covered (0.0 while nothing is covered)."""
        return self[field] / self.covered if self.covered > 0 else 0.0

    def as_dict(self) -> dict[str, int]:
        """Return ``{field: total}``."""
        return dict(zip(self.fields, self.totals, strict=True))


@dataclass(frozen=True, slots=True)
class CounterBucket:
    """One bucket of a :class:`RollingCounter`: when it started and its count per field."""

    start: float
    counts: tuple[int, ...]


class RollingCounter(BucketRing[list[int]]):
    """Named event counts over the last ``size`` buckets: O(1) to add, O(fields) to read.

    Made for the circuit breaker and friends, which count several outcomes of one event
    (a call: was it a failure? was it slow?) and read the totals after every call::

        window = RollingCounter(10, 1.0, fields=("calls", "failures", "slow"))
        window.add(1, failed, slow)      # bools count as 0 or 1
        calls, failures, slow = window.totals()

    The buckets roll exactly like :class:`RollingWindow`'s (same ring, same
    ``ignore_current``). The totals of the completed buckets in the window change only
    when the ring rolls, so they are summed then, once per ``interval`` at most; a read
    adds the current bucket to them and never loops over the buckets.

    Thread-safe by default (one lock guards every operation); with ``thread_safe=False``,
    safe within one thread or one event loop only.

    Args:
        size: the number of buckets (>= 1; >= 2 with ``ignore_current``).
        interval: the seconds each bucket covers (> 0).
        fields: the names of the counts, in the order :meth:`add` takes them.
        clock: the time source (default: :class:`~distsys.clock.MonotonicClock`).
        ignore_current: leave the current bucket out of every read.
        thread_safe: guard every operation with a lock.

    Raises:
        InvalidArgumentError: ``size``, ``interval`` or ``fields`` is out of range.
        ArgumentTypeError: an argument is of the wrong kind.
    """

    __slots__ = ("_completed", "_fields", "_width")

    def __init__(
        self,
        size: int,
        interval: float,
        *,
        fields: Sequence[str] = ("count",),
        clock: Clock | None = None,
        ignore_current: bool = False,
        thread_safe: bool = True,
    ) -> None:
        if isinstance(fields, str) or not isinstance(fields, Sequence):
            raise ArgumentTypeError("fields", fields, _FIELDS_ACCEPTED)
        names = tuple(fields)
        if (
            not names
            or len(set(names)) != len(names)
            or not all(isinstance(name, str) and name for name in names)
        ):
            raise InvalidArgumentError("fields", fields, _FIELDS_ACCEPTED)
        self._fields = names
        self._width = len(names)
        self._completed = [0] * self._width  # totals of the window's completed buckets
        super().__init__(
            size, interval, clock=clock, ignore_current=ignore_current, thread_safe=thread_safe
        )

    @property
    def fields(self) -> tuple[str, ...]:
        """The names of the counts, in the order :meth:`add` and :meth:`totals` use."""
        return self._fields

    def _new_bucket(self) -> list[int]:
        return [0] * self._width

    def _clear_bucket(self, bucket: list[int]) -> None:
        bucket[:] = [0] * len(bucket)

    def _enter_slot(self, slot: int) -> None:
        super()._enter_slot(slot)
        completed = [0] * self._width
        for bucket in self._live_buckets():
            if bucket is not self._cur:
                completed = list(map(add, completed, bucket))
        self._completed = completed

    def add(self, *amounts: int) -> None:
        """Add ``amounts[i]`` to field ``i`` in the current bucket (O(fields)).

        Fewer amounts than fields leave the rest unchanged; ``add()`` with no amounts counts
        one event in the first field.

        Raises:
            ArgumentTypeError: an amount is not an int.
            InvalidArgumentError: an amount is negative, or there are more than fields.
        """
        if not amounts:
            amounts = (1,)
        elif len(amounts) > self._width:
            raise InvalidArgumentError(
                "amounts", amounts, f"at most {self._width} ints, one per field of {self._fields}"
            )
        for amount in amounts:
            kind = amount.__class__
            if kind is not int and kind is not bool and not isinstance(amount, int):
                raise ArgumentTypeError("amounts", amount, _AMOUNT_ACCEPTED)
            if amount < 0:
                raise InvalidArgumentError("amounts", amount, _AMOUNT_ACCEPTED)
        lock = self._lock
        if lock is None:
            self._record(amounts)
        else:
            with lock:
                self._record(amounts)

    def _record(self, amounts: tuple[int, ...]) -> None:
        now = self._now()
        if now >= self._next_roll:
            self._roll(now)
        bucket = self._cur
        for i, amount in enumerate(amounts):
            bucket[i] += amount

    def totals(self) -> tuple[int, ...]:
        """Return the total of each field over the window, in field order (O(fields))."""
        with self._guard:
            self._sync()
            return self._read()

    def _read(self) -> tuple[int, ...]:
        if self._ignore_current:
            return tuple(self._completed)
        return tuple(map(add, self._completed, self._cur))

    def total(self, field: str) -> int:
        """Return the total of one field over the window.

        Raises:
            KeyError: ``field`` is not one of :attr:`fields`.
        """
        return self.statistics()[field]

    def statistics(self) -> CounterStatistics:
        """Return every total, by name, with the seconds the window covers."""
        with self._guard:
            now = self._sync()
            return CounterStatistics(self._fields, self._read(), self._covered(now))

    def buckets(self) -> tuple[CounterBucket, ...]:
        """Return the buckets in the window, oldest first (empty ones included)."""
        with self._guard:
            self._sync()
            return tuple(CounterBucket(start, tuple(b)) for start, b in self._live())
