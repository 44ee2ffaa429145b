"""From a URL's scheme to the class that implements it, imported only when asked for."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from distsys.backends._url import BackendURL, parse_url
from distsys.errors import MissingDependencyError, UnknownSchemeError

__all__ = ["Implementation", "SchemeTable"]


@dataclass(frozen=True, slots=True)
class Implementation:
    """Where a backend lives and what it needs.

    Attributes:
        target: ``"module:Class"``, imported on first use.
        library: the top-level module of the client library it needs, or None.
        extra: the distsys extra that installs that library.
    """

    target: str
    library: str | None = None
    extra: str | None = None


class SchemeTable:
    """A concept's schemes (``"redis"`` -> implementation), resolved lazily.

    Importing distsys never imports a client library: a backend module is imported when a
    URL of its scheme is opened. An unknown scheme names the known ones and the closest
    match; a missing client library names the extra to install. Immutable; thread-safe.
    """

    __slots__ = ("_concept", "_table")

    def __init__(self, concept: str, table: Mapping[str, Implementation]) -> None:
        self._concept = concept
        self._table = dict(table)

    @property
    def schemes(self) -> list[str]:
        """The known schemes, sorted."""
        return sorted(self._table)

    def resolve(self, url: str | BackendURL) -> tuple[BackendURL, type[Any]]:
        """Parse ``url`` and import the class that implements its scheme.

        Raises:
            UnknownSchemeError: the scheme is not in this table.
            MissingDependencyError: the backend's client library is not installed.
            InvalidArgumentError: the URL is malformed.
        """
        parsed = url if isinstance(url, BackendURL) else parse_url(url)
        impl = self._table.get(parsed.scheme)
        if impl is None:
            close = difflib.get_close_matches(parsed.scheme, self._table, n=1, cutoff=0.5)
            raise UnknownSchemeError(
                parsed.redacted(), parsed.scheme, list(self._table), close[0] if close else None
            )
        if impl.library is not None:
            try:
                importlib.import_module(impl.library)
            except ImportError:
                raise MissingDependencyError(
                    parsed.scheme, impl.library, impl.extra or impl.library
                ) from None
        module_name, _, class_name = impl.target.partition(":")
        cls: type[Any] = getattr(importlib.import_module(module_name), class_name)
        return parsed, cls

    def __repr__(self) -> str:
        return f"SchemeTable({self._concept!r}, schemes={self.schemes})"
