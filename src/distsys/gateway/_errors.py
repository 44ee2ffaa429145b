"""The gateway's own error: a configuration that cannot be used, naming the key.

::

    DistsysError
    └── InvalidArgumentError (ValueError)
        └── GatewayConfigError          the gateway's configuration is invalid: .key (the
                                        key path, e.g. ``routes[2].timeout``), .value,
                                        .accepted, .source (the file, when read from one)

Everything a request can run into is answered, not raised: see ``_responses.py`` for
the statuses and JSON bodies.
"""

from __future__ import annotations

from typing import Any

from distsys.errors import InvalidArgumentError

__all__ = ["GatewayConfigError"]


class GatewayConfigError(InvalidArgumentError):
    """The gateway's configuration is invalid; the message names the key path.

    Attributes:
        key: the key path, such as ``routes[2].timeout`` (route indices count from 0) or
            ``limits.max_body_bytes``; also :attr:`field`.
        value: the value found there (None when the key is missing).
        accepted: what the key accepts.
        detail: more about what is wrong ("" if nothing).
        source: the file the configuration came from, or None.
        missing: True when the key is required and absent.
        message: the whole message, when the key path and value do not tell it.
    """

    def __init__(
        self,
        key: str,
        value: Any,
        accepted: str,
        *,
        detail: str = "",
        source: str | None = None,
        missing: bool = False,
        message: str | None = None,
    ) -> None:
        super().__init__(key, value, accepted, detail=detail)
        self.key = key
        self.detail = detail
        self.source = source
        self.missing = missing
        self.message = message
        text = str(self.args[0]) if message is None else message
        if missing and message is None:
            text = f"{key} is missing: expected {accepted}"
            if detail:
                text = f"{text} ({detail})"
        if source is not None:
            text = f"{source}: {text}"
        self.args = (text,)

    def with_source(self, source: str) -> GatewayConfigError:
        """Return the same error, saying which file it is in."""
        return GatewayConfigError(
            self.key,
            self.value,
            self.accepted,
            detail=self.detail,
            source=source,
            missing=self.missing,
            message=self.message,
        )
