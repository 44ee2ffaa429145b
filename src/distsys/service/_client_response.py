"""ServiceResponse: a ServiceClient's answer, its body read whole."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, overload

import msgspec

from distsys.http import Headers
from distsys.service._client_errors import UpstreamStatusError

if TYPE_CHECKING:
    from distsys.registry import Instance

__all__ = ["ServiceResponse"]

T = TypeVar("T")


class ServiceResponse:
    """The answer of one ServiceClient call: status, headers and the whole body.

    Immutable after the call; safe to share.

    Attributes:
        status: the HTTP status.
        headers: the headers (case-insensitive lookups).
        content: the body.
        service: the service called.
        instance: the instance that answered.
        method: the request's method.
        path: the request's target (path and query).
        attempts: how many attempts the call took (1 without retries).
    """

    __slots__ = (
        "attempts",
        "content",
        "headers",
        "instance",
        "method",
        "path",
        "service",
        "status",
    )

    def __init__(
        self,
        status: int,
        headers: Headers,
        content: bytes,
        *,
        service: str,
        instance: Instance,
        method: str,
        path: str,
        attempts: int = 1,
    ) -> None:
        self.status = status
        self.headers = headers
        self.content = content
        self.service = service
        self.instance = instance
        self.method = method
        self.path = path
        self.attempts = attempts

    @property
    def ok(self) -> bool:
        """Whether the status is below 400."""
        return self.status < 400

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (undecodable bytes replaced)."""
        return self.content.decode("utf-8", "replace")

    @overload
    def json(self) -> Any: ...

    @overload
    def json(self, type: type[T]) -> T: ...

    def json(self, type: Any = Any) -> Any:
        """Decode the body as JSON with msgspec, into ``type`` when given (validated).

        Raises:
            msgspec.DecodeError: the body is not JSON.
            msgspec.ValidationError: it does not match ``type`` (the message names the
                field).
        """
        return msgspec.json.decode(self.content, type=type)

    def raise_for_status(self) -> ServiceResponse:
        """Return self if the status is below 400.

        Raises:
            UpstreamStatusError: the status is 4xx or 5xx (with the service, instance and
                status).
        """
        if self.status >= 400:
            raise UpstreamStatusError(self)
        return self

    def __repr__(self) -> str:
        return (
            f"<ServiceResponse {self.status} from {self.service}/{self.instance.id} "
            f"{len(self.content)} bytes>"
        )
