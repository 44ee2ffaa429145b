"""Cache keys built from a call's arguments, and errors that name an unhashable one."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable, Iterator
from typing import Any, Final

from distsys.errors import ArgumentTypeError

__all__ = ["hashkey", "name_unhashable_argument"]


class _KwargsMark:
    """Separates positional from keyword arguments in a key; one instance exists."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<kwargs>"


KWARGS_MARK: Final = _KwargsMark()


def hashkey(*args: Hashable, **kwargs: Hashable) -> tuple[Hashable, ...]:
    """Return a hashable key for a call: ``args``, plus the keyword arguments by name.

    ``f(1, 2)`` gives ``(1, 2)``; ``f(1, b=2, c=3)`` gives
    ``(1, <kwargs>, ("b", 2), ("c", 3))`` whatever the order of the keywords, and is not
    the same key as ``f(1, 2, 3)`` (as with :func:`functools.lru_cache`). Every argument
    must be hashable.
    """
    if kwargs:
        return (*args, KWARGS_MARK, *sorted(kwargs.items()))
    return args


def _unhashable(value: object) -> str | None:
    try:
        hash(value)
    except TypeError as exc:
        return str(exc)
    return None


def _arguments(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Iterator[tuple[str, Any]]:
    """Yield ``(name, value)`` per argument: ``rest[1]`` for ``*rest``, the keyword for ``**``."""
    try:
        signature = inspect.signature(fn)
        bound = signature.bind(*args, **kwargs).arguments
    except (TypeError, ValueError):  # no signature, or a call it would reject anyway
        yield from ((f"args[{i}]", value) for i, value in enumerate(args))
        yield from kwargs.items()
        return
    for name, value in bound.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            yield from ((f"{name}[{i}]", item) for i, item in enumerate(value))
        elif kind is inspect.Parameter.VAR_KEYWORD:
            yield from value.items()
        else:
            yield name, value


def name_unhashable_argument(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Raise :class:`ArgumentTypeError` naming the first unhashable argument, if any."""
    for name, value in _arguments(fn, args, kwargs):
        reason = _unhashable(value)
        if reason is not None:
            raise ArgumentTypeError(
                name,
                value,
                f"a hashable value ({reason}): cached() makes the cache key from the "
                "arguments; pass key= to build a hashable key from them yourself",
            )
