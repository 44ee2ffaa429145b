"""Go's context model: cancellation, deadlines and request-scoped values.

``background()`` is the root; ``with_cancel``, ``with_timeout``, ``with_deadline`` and
``with_value`` derive children. Cancelling a context cancels everything derived from it,
a child's deadline is never later than its parent's, and ``ctx.err()`` says why it ended.
``async with ctx.scope():`` cancels an asyncio block when the context ends; threads wait
on ``ctx.done``. Deadlines cross process boundaries as the ``X-Request-Timeout-Ms``
header (``encode_timeout`` / ``decode_timeout``).
"""

from distsys.context._context import (
    CancelFunc,
    Context,
    Done,
    background,
    with_cancel,
    with_deadline,
    with_timeout,
    with_value,
)
from distsys.context._header import TIMEOUT_HEADER, decode_timeout, encode_timeout
from distsys.context._scope import Scope

__all__ = [
    "TIMEOUT_HEADER",
    "CancelFunc",
    "Context",
    "Done",
    "Scope",
    "background",
    "decode_timeout",
    "encode_timeout",
    "with_cancel",
    "with_deadline",
    "with_timeout",
    "with_value",
]
