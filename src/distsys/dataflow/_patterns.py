"""Recognising functions whose meaning is known, so the engine can take a faster path.

``map(pair).reduce_by_key(operator.add)`` where ``pair`` is ``def pair(w): return w, 1``
is a count of the records: the engine counts them with a ``Counter`` (a C loop) instead
of calling ``pair`` once per record and adding ones. A function is recognised only when
its bytecode is exactly "build and return the tuple (argument, 1)" — no other effect is
possible — so the rewrite never changes a result.
"""

from __future__ import annotations

import dis
import inspect
import types
from typing import Any, Final

__all__ = ["pairs_with_one"]

_IGNORED: Final = frozenset({"RESUME", "NOP", "CACHE", "EXTENDED_ARG"})
_LOAD_ARG: Final = frozenset({"LOAD_FAST", "LOAD_FAST_BORROW", "LOAD_FAST_CHECK"})
_LOAD_CONST: Final = frozenset({"LOAD_CONST", "LOAD_SMALL_INT"})
_FLAGS: Final = (
    inspect.CO_VARARGS
    | inspect.CO_VARKEYWORDS
    | inspect.CO_GENERATOR
    | inspect.CO_COROUTINE
    | inspect.CO_ASYNC_GENERATOR
)


def pairs_with_one(fn: Any) -> bool:
    """True if ``fn(x)`` is exactly ``(x, 1)``: one positional argument, no other effect."""
    if type(fn) is not types.FunctionType:
        return False
    code = fn.__code__
    if code.co_argcount != 1 or code.co_kwonlyargcount or code.co_flags & _FLAGS:
        return False
    steps = [i for i in dis.get_instructions(code) if i.opname not in _IGNORED]
    if len(steps) != 4:
        return False
    load, const, build, ret = steps
    return (
        load.opname in _LOAD_ARG
        and load.argval == code.co_varnames[0]
        and const.opname in _LOAD_CONST
        and type(const.argval) is int
        and const.argval == 1
        and build.opname == "BUILD_TUPLE"
        and build.arg == 2
        and ret.opname == "RETURN_VALUE"
    )
