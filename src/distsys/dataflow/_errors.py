"""The errors of distsys.dataflow (to move into :mod:`distsys.errors` later)::

    DistsysError
    ├── InvalidArgumentError (ValueError)
    │   ├── MalformedRecordError               an input line that cannot be parsed: .path,
    │   │                                      .line, .reason
    │   └── ArgumentTypeError (TypeError)
    │       ├── NotPicklableError              a function the worker processes cannot
    │       │                                  receive: .operation, .function
    │       └── RecordTypeError                a record of the wrong shape reached an
    │                                          operation: .operation, .record
    ├── EmptyDatasetError (ValueError)         reduce() of a dataset with no records
    ├── MissingDependencyError (ImportError)
    │   └── MissingLibraryError                an operation needs a library that is not
    │                                          installed: .operation, .library, .extra
    ├── EngineUnavailableError (RuntimeError)  an engine that is known but cannot run: .engine
    └── TaskFailedError (RuntimeError)         a task failed on every attempt: .stage,
                                               .partition, .attempts, .error_type,
                                               .remote_traceback

``MalformedRecordError`` and ``RecordTypeError`` are *deterministic*: running the task
again would fail the same way, so the engine fails the job at the first occurrence
instead of retrying, and re-raises the error itself in the driver. Every other exception
a task raises is retried. These errors pickle, so they cross process boundaries intact.
"""

from __future__ import annotations

from typing import Any

from distsys.errors import (
    ArgumentTypeError,
    DistsysError,
    InvalidArgumentError,
    MissingDependencyError,
)

__all__ = [
    "EmptyDatasetError",
    "EngineUnavailableError",
    "MalformedRecordError",
    "MissingLibraryError",
    "NotPicklableError",
    "RecordTypeError",
    "TaskFailedError",
]

_PREVIEW = 200  # characters of a record shown in an error


def preview(value: Any, width: int = _PREVIEW) -> str:
    """Return ``repr(value)``, cut to ``width`` characters."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


class MalformedRecordError(InvalidArgumentError):
    """An input line could not be decoded or parsed.

    Attributes:
        path: the file.
        line: the 1-based line number in that file.
        reason: what was wrong with it.
    """

    def __init__(self, path: str, line: int, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        super().__init__(
            "input",
            f"{path}:{line}",
            "well-formed records",
            detail=f"{reason}; pass errors='skip' to skip malformed lines",
        )
        self.args = (f"{path}:{line}: {reason}",)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason} (pass errors='skip' to skip such lines)"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.line, self.reason))


class NotPicklableError(ArgumentTypeError):
    """A function given to an operation cannot be sent to the worker processes.

    Attributes:
        operation: the operation it was given to (``"map"``, ``"reduce_by_key"``...).
        function: the function.
    """

    def __init__(
        self, operation: str, function: Any, reason: str, *, hint: str | None = None
    ) -> None:
        self.operation = operation
        self.function = function
        self.reason = reason
        if hint is None:
            hint = (
                "lambdas, nested functions and functions typed into an interactive session "
                "cannot be pickled by reference, so move it to module level, or pass "
                "processes=False to run the tasks in this process"
            )
        super().__init__(
            f"{operation}()",
            function,
            "a function the worker processes can import: one defined with def at the top "
            "level of a module (or a functools.partial / operator.itemgetter of one)",
            detail=f"{reason}; {hint}",
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_not_picklable, (self.operation, repr(self.function), self.reason))


def _rebuild_not_picklable(operation: str, function: str, reason: str) -> NotPicklableError:
    return NotPicklableError(operation, _Raw(function), reason)


class RecordTypeError(ArgumentTypeError):
    """A record of the wrong shape reached an operation (e.g. a non-pair before a join).

    Attributes:
        operation: the operation, e.g. ``"reduce_by_key"``.
        record: a preview (``repr``, cut) of the record.
    """

    def __init__(
        self,
        operation: str,
        record: Any,
        accepted: str,
        *,
        detail: str = "",
        shown: str | None = None,
    ) -> None:
        self.operation = operation
        self.record = shown if shown is not None else preview(record)
        self._accepted = accepted
        self._detail = detail
        super().__init__(f"record reaching {operation}()", _Raw(self.record), accepted)
        if detail:
            self.args = (f"{self.args[0]} ({detail})",)

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_record_type, (self.operation, self.record, self._accepted, self._detail))


def _rebuild_record_type(
    operation: str, record: str, accepted: str, detail: str
) -> RecordTypeError:
    return RecordTypeError(operation, None, accepted, detail=detail, shown=record)


class _Raw(str):
    """A string whose repr is itself: a record preview shown without extra quotes."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


class EmptyDatasetError(DistsysError, ValueError):
    """An action that needs at least one record (``reduce``) ran on an empty dataset."""

    def __init__(self, action: str) -> None:
        self.action = action
        super().__init__(f"{action}() of an empty dataset has no result")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.action,))


class MissingLibraryError(MissingDependencyError):
    """An operation needs an optional library that is not installed.

    Attributes:
        operation: the operation, e.g. ``"read_table()"``.
        library: the library's import name.
        extra: the distsys extra that installs it.
    """

    def __init__(self, operation: str, library: str, extra: str) -> None:
        self.operation = operation
        self.library = library
        self.extra = extra
        DistsysError.__init__(
            self,
            f"{operation} needs the {library!r} library, which is not installed: "
            f"pip install 'distsys[{extra}]'",
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.operation, self.library, self.extra))


class EngineUnavailableError(DistsysError, RuntimeError):
    """A known engine cannot run here: not implemented yet, or its library is missing.

    Attributes:
        engine: the engine name.
        reason: why it cannot run, with what to do about it.
    """

    def __init__(self, engine: str, reason: str) -> None:
        self.engine = engine
        self.reason = reason
        super().__init__(f"engine {engine!r} is not available: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.engine, self.reason))


class TaskFailedError(DistsysError, RuntimeError):
    """A task failed on every attempt, so its job failed.

    The original exception is the ``__cause__`` when it could be sent back from the
    worker; its traceback, as formatted in the worker, is always in the message.

    Attributes:
        stage: the stage's number in the job and its description.
        partition: the partition the task computed.
        attempts: how many times it was tried.
        error_type: the qualified name of the last attempt's exception type.
        remote_traceback: the last attempt's traceback, formatted where it ran.
    """

    def __init__(
        self,
        stage: str,
        partition: int,
        attempts: int,
        error_type: str,
        error: str,
        remote_traceback: str,
    ) -> None:
        self.stage = stage
        self.partition = partition
        self.attempts = attempts
        self.error_type = error_type
        self.error = error
        self.remote_traceback = remote_traceback
        tries = "once" if attempts == 1 else f"{attempts} times"
        super().__init__(
            f"task {partition} of stage {stage} failed {tries}; last error: {error_type}: "
            f"{error}\n\nTraceback of the last attempt, in the worker:\n{remote_traceback}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (
                self.stage,
                self.partition,
                self.attempts,
                self.error_type,
                self.error,
                self.remote_traceback,
            ),
        )
