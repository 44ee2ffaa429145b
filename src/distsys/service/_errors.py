"""The errors of the service framework.

They belong under :class:`~distsys.errors.DistsysError` like every other distsys error::

    DistsysError
    ├── HTTPError                      a handler's way to answer with an error status:
    │                                  .status, .detail, .headers
    └── LifecycleError (RuntimeError)  a transition the lifecycle does not allow, or a
                                       state that can no longer be reached: .state
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING

from distsys.errors import DistsysError, InvalidArgumentError

if TYPE_CHECKING:
    from distsys.service._lifecycle import State

__all__ = ["HTTPError", "LifecycleError"]


class HTTPError(DistsysError):
    """Raise it in a handler to answer ``status`` with a JSON error body.

    The body is ``{"error": <detail>, "status": <status>, "request_id": ...}``.

    Attributes:
        status: the HTTP status, 400..599.
        detail: the message sent to the caller (default: the status phrase).
        headers: extra response headers (for example ``Retry-After``).
    """

    def __init__(
        self, status: int, detail: str | None = None, *, headers: Mapping[str, str] | None = None
    ) -> None:
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise InvalidArgumentError("status", status, "an HTTP error status in 400..599")
        self.status = status
        self.detail = detail if detail is not None else _phrase(status)
        self.headers = dict(headers or {})
        super().__init__(f"{status}: {self.detail}")


class LifecycleError(DistsysError, RuntimeError):
    """A service was asked for a transition its current state does not allow.

    Also raised by a wait for a state that can no longer be reached (waiting for RUNNING
    once the service has failed).

    Attributes:
        state: the state the service was in.
        failure: the exception that failed the service, if it failed.
    """

    def __init__(self, message: str, state: State, failure: BaseException | None = None) -> None:
        self.state = state
        self.failure = failure
        super().__init__(message)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"
