"""The ASGI lifespan protocol: the service's own hooks plus a wrapped app's lifespan.

The server speaks lifespan to the service; the service runs a wrapped app's lifespan as
a sub-conversation (the app's own startup and shutdown handlers, FastAPI's ``lifespan=``,
Starlette's ``on_startup`` ...), then its own ``on_startup`` hooks. Shutdown runs in the
opposite order. An app that does not speak lifespan (it raises at once) is tolerated, as
uvicorn's ``lifespan="auto"`` does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["ASGIApp", "Hook", "InnerLifespan", "LifespanFailedError"]

log = logging.getLogger("distsys.service")

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]
Hook = Callable[[], Awaitable[object]]


class LifespanFailedError(Exception):
    """The wrapped app reported ``lifespan.startup.failed`` / ``shutdown.failed``."""


class InnerLifespan:
    """Drive a wrapped ASGI app's lifespan from inside the service's own.

    Safe within one event loop.
    """

    def __init__(self, app: ASGIApp, scope: MutableMapping[str, Any]) -> None:
        self._app = app
        self._scope = dict(scope)  # shares scope["state"] with the server, as it should
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._supported = True
        self._error: BaseException | None = None

    async def _run(self) -> None:
        try:
            await self._app(self._scope, self._to_app.get, self._from_app.put)
        except BaseException as exc:
            self._error = exc
            if not isinstance(exc, Exception):
                raise
        finally:
            self._from_app.put_nowait(None)

    async def startup(self) -> None:
        """Send ``lifespan.startup`` and wait for the app's answer.

        Raises:
            LifespanFailedError: the app answered ``lifespan.startup.failed``.
        """
        self._task = asyncio.create_task(self._run(), name="wrapped app lifespan")
        await self._to_app.put({"type": "lifespan.startup"})
        answer = await self._from_app.get()
        if answer is None:
            self._supported = False
            log.debug("the wrapped app does not speak lifespan (%r)", self._error)
            return
        if answer["type"] == "lifespan.startup.failed":
            raise LifespanFailedError(answer.get("message") or "the wrapped app failed to start")

    async def shutdown(self) -> None:
        """Send ``lifespan.shutdown`` and wait for the app to finish it.

        Raises:
            LifespanFailedError: the app answered ``lifespan.shutdown.failed``, or raised.
        """
        if self._task is None:
            return
        try:
            if not self._supported:
                return
            await self._to_app.put({"type": "lifespan.shutdown"})
            answer = await self._from_app.get()
            if answer is None:
                raise LifespanFailedError(f"the wrapped app's lifespan ended: {self._error!r}")
            if answer["type"] == "lifespan.shutdown.failed":
                raise LifespanFailedError(answer.get("message") or "the wrapped app failed to stop")
        finally:
            await asyncio.gather(self._task, return_exceptions=True)
