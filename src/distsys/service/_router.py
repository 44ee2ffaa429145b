"""Route templates compiled into per-method tables: a dict for static paths, a tree for the rest.

A template is a path of ``/``-separated segments; a segment is literal text or a parameter
``{name}`` / ``{name:converter}``. Converters take part in matching (``{id:int}`` does not
match ``/orders/abc``, so another route may), which is how typed path parameters give 404
rather than 400:

=========  ==========================================  ==============
converter  matches                                     value
=========  ==========================================  ==============
``str``    one non-empty segment (the default)         ``str``
``int``    ASCII digits                                ``int``
``float``  digits with an optional ``.digits`` part    ``float``
``uuid``   a UUID in its 36-character form             ``uuid.UUID``
``path``   the rest of the path, slashes included      ``str`` (last)
=========  ==========================================  ==============

Lookup never scans the routes: a static path is one dict lookup; a parameterised one
walks the tree segment by segment (literal children first, then typed parameters, then
``str``), backtracking only where two templates share a prefix.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

from distsys.errors import InvalidArgumentError

__all__ = ["CONVERTERS", "MethodNotAllowed", "Router", "Template", "parse_template"]

T = TypeVar("T")

_FLOAT: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_PARAM: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?\}")
_TEMPLATE_ACCEPTED: Final = (
    "a path starting with '/', whose segments are literal text or {name} / {name:converter} "
    "with converter one of str, int, float, uuid, path (path only last)"
)


def _to_str(segment: str) -> str:
    if not segment:
        raise ValueError("empty segment")
    return segment


def _to_int(segment: str) -> int:
    if not (segment.isascii() and segment.isdigit()):
        raise ValueError(segment)
    return int(segment)


def _to_float(segment: str) -> float:
    if not _FLOAT.fullmatch(segment):
        raise ValueError(segment)
    return float(segment)


def _to_uuid(segment: str) -> uuid.UUID:
    if len(segment) != 36:
        raise ValueError(segment)
    return uuid.UUID(segment)


CONVERTERS: Final[dict[str, tuple[Callable[[str], Any], type]]] = {
    "str": (_to_str, str),
    "int": (_to_int, int),
    "float": (_to_float, float),
    "uuid": (_to_uuid, uuid.UUID),
    "path": (_to_str, str),
}
"""Converter name → (function from segment to value, raising ValueError; value type)."""

_PRIORITY: Final = {"int": 0, "uuid": 1, "float": 2, "str": 3}


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    converter: str


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed route template.

    Attributes:
        text: the template as written, e.g. ``/orders/{id:int}``; the ``route`` label of
            the service's metrics.
        segments: literal strings and parameters, in order (after the leading ``/``).
        params: parameter name → converter name.
    """

    text: str
    segments: tuple[str | _Param, ...]
    params: dict[str, str] = field(hash=False)

    @property
    def static(self) -> bool:
        """Whether the template has no parameter."""
        return not self.params


def parse_template(text: str) -> Template:
    """Parse a route template.

    Raises:
        InvalidArgumentError: the template is malformed (the message says what is accepted).
    """
    if not isinstance(text, str) or not text.startswith("/"):
        raise InvalidArgumentError("path", text, _TEMPLATE_ACCEPTED)
    segments: list[str | _Param] = []
    params: dict[str, str] = {}
    parts = text[1:].split("/")
    for i, part in enumerate(parts):
        if "{" not in part and "}" not in part:
            segments.append(part)
            continue
        found = _PARAM.fullmatch(part)
        if found is None:
            raise InvalidArgumentError(
                "path", text, _TEMPLATE_ACCEPTED, detail=f"segment {part!r} mixes text and {{}}"
            )
        name, converter = found.group(1), found.group(2) or "str"
        if converter not in CONVERTERS:
            raise InvalidArgumentError(
                "path", text, _TEMPLATE_ACCEPTED, detail=f"unknown converter {converter!r}"
            )
        if converter == "path" and i != len(parts) - 1:
            raise InvalidArgumentError(
                "path", text, _TEMPLATE_ACCEPTED, detail="{name:path} must be the last segment"
            )
        if name in params:
            raise InvalidArgumentError(
                "path", text, _TEMPLATE_ACCEPTED, detail=f"parameter {name!r} appears twice"
            )
        params[name] = converter
        segments.append(_Param(name, converter))
    return Template(text, tuple(segments), params)


class MethodNotAllowed(Exception):
    """The path matched, but not for this method; ``allowed`` lists the methods that would."""

    def __init__(self, allowed: frozenset[str]) -> None:
        self.allowed = allowed
        super().__init__(", ".join(sorted(allowed)))


class _Node(Generic[T]):
    __slots__ = ("catchall", "children", "methods", "params")

    def __init__(self) -> None:
        self.children: dict[str, _Node[T]] = {}
        self.params: list[tuple[str, str, Callable[[str], Any], _Node[T]]] = []
        self.catchall: tuple[str, dict[str, T]] | None = None
        self.methods: dict[str, T] | None = None


class Router(Generic[T]):
    """Method + path → a route value and its converted path parameters.

    Safe within one event loop; add every route before serving.
    """

    __slots__ = ("_root", "_static", "_templates")

    def __init__(self) -> None:
        self._static: dict[str, dict[str, T]] = {}
        self._root: _Node[T] = _Node()
        self._templates: dict[tuple[str, str], Template] = {}

    def add(self, method: str, template: Template, value: T) -> None:
        """Route ``method`` on ``template`` to ``value``.

        Raises:
            InvalidArgumentError: the same method and template shape is already routed.
        """
        shape = "/".join(
            s if isinstance(s, str) else f"{{:{s.converter}}}" for s in template.segments
        )
        if (method, shape) in self._templates:
            earlier = self._templates[(method, shape)].text
            raise InvalidArgumentError(
                "path", template.text, "a route not already defined", detail=f"{method} {earlier}"
            )
        self._templates[(method, shape)] = template
        if template.static:
            self._static.setdefault(template.text, {})[method] = value
            return
        node = self._root
        for segment in template.segments:
            if isinstance(segment, str):
                node = node.children.setdefault(segment, _Node())
                continue
            if segment.converter == "path":
                if node.catchall is None:
                    node.catchall = (segment.name, {})
                elif node.catchall[0] != segment.name:
                    raise InvalidArgumentError(
                        "path", template.text, "one {name:path} name per position"
                    )
                node.catchall[1][method] = value
                return
            node = self._param_child(node, segment)
        if node.methods is None:
            node.methods = {}
        node.methods[method] = value

    @staticmethod
    def _param_child(node: _Node[T], param: _Param) -> _Node[T]:
        for name, converter, _, existing in node.params:
            if name == param.name and converter == param.converter:
                return existing
        child: _Node[T] = _Node()
        node.params.append((param.name, param.converter, CONVERTERS[param.converter][0], child))
        node.params.sort(key=lambda p: _PRIORITY[p[1]])  # stable: typed first, then str
        return child

    def match(self, method: str, path: str) -> tuple[T, dict[str, Any]] | None:
        """Return ``(value, params)`` for the route, or None when no path matches.

        Raises:
            MethodNotAllowed: some route has this path, none has this method.
        """
        allowed: set[str] = set()
        methods = self._static.get(path)
        if methods is not None:
            value = methods.get(method)
            if value is not None:
                return value, {}
            allowed.update(methods)
        if self._root.children or self._root.params or self._root.catchall:
            segments = path[1:].split("/") if path.startswith("/") else [path]
            for methods, params in _walk(self._root, segments, 0, {}):
                value = methods.get(method)
                if value is not None:
                    return value, params
                allowed.update(methods)
        if allowed:
            raise MethodNotAllowed(frozenset(allowed))
        return None


def _walk(
    node: _Node[T], segments: list[str], i: int, params: dict[str, Any]
) -> Iterator[tuple[dict[str, T], dict[str, Any]]]:
    """Yield every (methods, params) that matches, most specific first."""
    if i == len(segments):
        if node.methods is not None:
            yield node.methods, params
        return
    segment = segments[i]
    child = node.children.get(segment)
    if child is not None:
        yield from _walk(child, segments, i + 1, params)
    for name, _, convert, sub in node.params:
        try:
            value = convert(segment)
        except ValueError:
            continue
        yield from _walk(sub, segments, i + 1, {**params, name: value})
    if node.catchall is not None:
        rest = "/".join(segments[i:])
        if rest:
            name, methods = node.catchall
            yield methods, {**params, name: rest}
