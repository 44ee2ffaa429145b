"""A handler's signature, read once at decoration time, turned into an argument binder.

Each parameter of an ``async def`` handler is filled from the request by its name and
annotation:

* a name in the route template: the path parameter (converted to the annotation when it
  is not what the template's converter gives: 400 naming it when that fails);
* annotated :class:`Request`: the request; annotated :class:`Context`: its Context;
* a scalar annotation (``str``, ``int``, ``float``, ``bool``, ``UUID``, dates, ``Decimal``,
  an ``Enum`` or ``Literal``, optionally ``| None``): a query parameter, required unless
  it has a default (400 naming it when missing or invalid);
* anything else (a ``msgspec.Struct``, ``dict``, ``list`` ...): the JSON body, decoded and
  validated by msgspec (400 naming the field that failed). At most one.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import inspect
import re
import types
import typing
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from distsys.context import Context
from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.service._errors import HTTPError
from distsys.service._metrics import RouteSeries
from distsys.service._request import Request
from distsys.service._router import CONVERTERS, Template

__all__ = ["Endpoint", "InvalidInputError", "bind", "validation_field"]

Handler = Callable[..., Awaitable[Any]]

_SCALARS: Final = (
    str,
    int,
    float,
    bool,
    uuid.UUID,
    datetime.datetime,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    decimal.Decimal,
)
_AT: Final = re.compile(r" - at `\$([^`]*)`$")
_FIELD: Final = re.compile(r"field `([^`]+)`")


class InvalidInputError(HTTPError):
    """400 for one input: ``field`` names the parameter or body field that was wrong."""

    def __init__(self, detail: str, field: str | None) -> None:
        super().__init__(400, detail)
        self.field = field


def validation_field(error: msgspec.ValidationError) -> str | None:
    """Return the body field a msgspec validation error is about (``items[0].qty``)."""
    text = str(error)
    at = _AT.search(text)
    path = at.group(1).lstrip(".") if at else ""
    named = _FIELD.search(text)
    if named:
        path = f"{path}.{named.group(1)}" if path else named.group(1)
    return path or None


def _is_scalar(tp: Any) -> bool:
    if isinstance(tp, type):
        return issubclass(tp, _SCALARS) or issubclass(tp, enum.Enum)
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return True
    if origin in (typing.Union, types.UnionType):
        return all(a is type(None) or _is_scalar(a) for a in typing.get_args(tp))
    return False


@dataclass(frozen=True, slots=True)
class _Path:
    name: str
    target: Any  # the annotation to convert to, or None when the converter's type fits


@dataclass(frozen=True, slots=True)
class _Query:
    name: str
    target: Any
    default: Any  # inspect.Parameter.empty when required


@dataclass(frozen=True, slots=True)
class _Body:
    name: str
    decoder: msgspec.json.Decoder[Any]
    default: Any


class Endpoint:
    """A handler with its argument binder, its status, and its metric series.

    Immutable after construction; shared by every request of its route.
    """

    __slots__ = ("_fillers", "handler", "series", "simple", "status", "template")

    def __init__(
        self,
        handler: Handler,
        template: Template,
        fillers: list[tuple[str, Any]],
        status: int | None,
        series: RouteSeries,
    ) -> None:
        self.handler = handler
        self.template = template
        self.status = status
        self.series = series
        self._fillers = fillers
        # Path parameters only, already of the right type: call handler(**params) directly.
        self.simple = all(kind == "path" and spec.target is None for kind, spec in fillers)

    async def call(self, request: Request) -> Any:
        """Fill the handler's arguments from ``request`` and run it."""
        kwargs: dict[str, Any] = {}
        for kind, spec in self._fillers:
            if kind == "path":
                value = request.path_params[spec.name]
                if spec.target is not None:
                    value = _convert(value, spec.target, f"path parameter {spec.name!r}", spec.name)
                kwargs[spec.name] = value
            elif kind == "query":
                values = request.query_list(spec.name)
                if not values:
                    if spec.default is inspect.Parameter.empty:
                        raise InvalidInputError(
                            f"query parameter {spec.name!r} is required", spec.name
                        )
                    kwargs[spec.name] = spec.default
                else:
                    kwargs[spec.name] = _convert(
                        values[0], spec.target, f"query parameter {spec.name!r}", spec.name
                    )
            elif kind == "body":
                kwargs[spec.name] = await _decode_body(request, spec)
            elif kind == "request":
                kwargs[spec] = request
            else:
                kwargs[spec] = request.ctx
        return await self.handler(**kwargs)


def _convert(value: Any, target: Any, what: str, field: str) -> Any:
    try:
        return msgspec.convert(value, target, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidInputError(f"invalid {what}: {exc}", field) from None


async def _decode_body(request: Request, spec: _Body) -> Any:
    body = await request.body()
    if not body.strip():
        if spec.default is inspect.Parameter.empty:
            raise InvalidInputError("a JSON request body is required", spec.name)
        return spec.default
    try:
        return spec.decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidInputError(f"invalid request body: {exc}", validation_field(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidInputError(f"malformed JSON: {exc}", None) from None


def bind(handler: Any, template: Template, status: int | None, series: RouteSeries) -> Endpoint:
    """Read ``handler``'s signature and return its :class:`Endpoint`.

    Raises:
        ArgumentTypeError: ``handler`` is not an ``async def`` function.
        InvalidArgumentError: a parameter cannot be filled (the message names it).
    """
    if not inspect.iscoroutinefunction(handler):
        raise ArgumentTypeError("handler", handler, "an async def function")
    try:
        hints = typing.get_type_hints(handler)
    except Exception as exc:
        raise InvalidArgumentError(
            "handler", handler, "resolvable type annotations", detail=str(exc)
        ) from exc
    where = f"{getattr(handler, '__qualname__', handler)} for {template.text}"
    fillers: list[tuple[str, Any]] = []
    body_name: str | None = None
    for name, param in inspect.signature(handler).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise InvalidArgumentError(
                name, param.kind.description, "a plain or keyword-only parameter", detail=where
            )
        tp = hints.get(name, Any)
        if name in template.params:
            produced = CONVERTERS[template.params[name]][1]
            fits = tp is Any or tp is produced or (tp is float and produced is int)
            fillers.append(("path", _Path(name, None if fits else tp)))
        elif tp is Request:
            fillers.append(("request", name))
        elif tp is Context:
            fillers.append(("context", name))
        elif tp is Any and param.default is param.empty:
            raise InvalidArgumentError(
                name,
                "no annotation",
                "a path parameter, or an annotation: Request, Context, a scalar "
                "(query parameter) or a body type",
                detail=where,
            )
        elif _is_scalar(tp) or tp is Any:
            fillers.append(("query", _Query(name, tp, param.default)))
        else:
            if body_name is not None:
                raise InvalidArgumentError(
                    name, tp, f"one body parameter per handler ({body_name!r} is one)", detail=where
                )
            body_name = name
            try:
                decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(tp)
            except TypeError as exc:
                raise InvalidArgumentError(
                    name, tp, "a type msgspec can decode", detail=str(exc)
                ) from exc
            fillers.append(("body", _Body(name, decoder, param.default)))
    missing = set(template.params) - {spec.name for kind, spec in fillers if kind == "path"}
    if missing:
        raise InvalidArgumentError(
            "path", template.text, "a handler taking every path parameter",
            detail=f"{where} lacks {', '.join(sorted(missing))}",
        )  # fmt: skip
    return Endpoint(handler, template, fillers, status, series)
