"""The error of a ServiceClient call that got an error status back.

Transport failures are :class:`~distsys.http.UpstreamError` subclasses, which a
``ServiceClient`` fills with ``.service`` and ``.instance``; refusals are
:class:`~distsys.errors.NoInstancesError` and :class:`~distsys.errors.BreakerOpenError`;
the caller's deadline is :class:`~distsys.errors.DeadlineExceededError`. The helpers
here word those errors so that they name the service and the instance::

    DistsysError
    └── UpstreamStatusError        raised by ServiceResponse.raise_for_status() for a
                                   4xx or 5xx answer: .service, .instance, .address,
                                   .status, .response
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from distsys.errors import CanceledError, DeadlineExceededError, DistsysError, NoInstancesError
from distsys.http import UpstreamError

if TYPE_CHECKING:
    from distsys.context import Context
    from distsys.registry import Instance, Resolver
    from distsys.service._client_response import ServiceResponse

__all__ = ["UpstreamStatusError", "annotate", "call_ended", "no_instances"]


class UpstreamStatusError(DistsysError):
    """An instance answered with an error status (4xx or 5xx).

    Raised by :meth:`ServiceResponse.raise_for_status`, never automatically: a 404 is an
    answer, not a failure of the call.

    Attributes:
        service: the service called.
        instance: the id of the instance that answered.
        address: its ``host:port``.
        status: the status it answered with.
        response: the whole response (its body often says why).
    """

    def __init__(self, response: ServiceResponse) -> None:
        self.response = response
        self.service = response.service
        self.instance = response.instance.id
        self.address = response.instance.address
        self.status = response.status
        super().__init__(
            f"{self.service}/{self.instance} at {self.address} answered {self.status} "
            f"to {response.method} {response.path}"
        )


def call_ended(service: str, ctx: Context, last: BaseException | None) -> DistsysError:
    """Return the error of a call whose Context ended (with its last failure, if any)."""
    err = ctx.err()
    where = f"calling {service!r}"
    if last is not None:
        where = f"{where} (last error: {last})"
    if isinstance(err, CanceledError):
        return CanceledError(f"context canceled {where}", cause=err.cause)
    return DeadlineExceededError(f"deadline exceeded {where}")


def annotate(
    exc: BaseException, service: str, instance: Instance, ctx: Context, attempt: int
) -> BaseException:
    """Say which service and instance a failed attempt was for.

    A transport error gets ``.service`` and ``.instance`` (and its message shows them); a
    deadline or cancellation is replaced by one whose message names them.
    """
    if isinstance(exc, UpstreamError):
        exc.service = service
        exc.instance = instance.id
        return exc
    if isinstance(exc, DeadlineExceededError | CanceledError):
        what = "deadline exceeded" if isinstance(exc, DeadlineExceededError) else "canceled"
        scope = "attempt timeout" if ctx.err() is None else "call"
        message = (
            f"{what} calling {service!r} ({scope}; instance {instance.id} at "
            f"{instance.address}, attempt {attempt})"
        )
        if isinstance(exc, CanceledError):
            return CanceledError(message, cause=exc.cause)
        return DeadlineExceededError(message)
    return exc


def no_instances(exc: NoInstancesError, resolver: Resolver | None) -> NoInstancesError:
    """Return the balancer's NoInstancesError, saying so when the view is stale."""
    reason = exc.reason
    if resolver is not None and resolver.statistics().stale:
        reason = f"{reason} (the registry is unreachable: this is its last known view)"
    return NoInstancesError(exc.service, reason)
