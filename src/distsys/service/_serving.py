"""One run of a service on uvicorn: start, register, serve, drain, stop.

The order of a stop matters, and is the point of this module::

    STOPPING ─▶ registry: DRAINING ─▶ drain delay (still serving) ─▶ deregister
             ─▶ close the listening socket, finish in-flight requests (drain timeout)
             ─▶ shutdown hooks ─▶ TERMINATED

Callers learn that an instance is leaving before its socket closes, and no request that
reached it is dropped unless the drain timeout runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from distsys.service._errors import LifecycleError
from distsys.service._lifecycle import State

if TYPE_CHECKING:
    from distsys.service._registrar import Registrar
    from distsys.service._server import Server
    from distsys.service._service import Service

__all__ = ["Run", "serve"]

log = logging.getLogger("distsys.service")


class Run:
    """The state of one ``serve()``: its loop, its stop requests, its uvicorn server.

    ``request_stop`` may be called from any thread (and from signal handlers); the rest
    belongs to the loop that serves.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.stopping = asyncio.Event()
        self.hurry = asyncio.Event()
        self.server: Server | None = None

    def request_stop(self, *, force: bool) -> None:
        """Ask for a graceful stop (``force``: cut the drain short). Thread-safe."""

        def request() -> None:
            if force:
                self.hurry.set()
                if self.server is not None:
                    self.server.should_exit = True
                    self.server.force_exit = True
            self.stopping.set()

        if _on_loop_thread(self.loop):
            request()
        else:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to stop
                self.loop.call_soon_threadsafe(request)

    def install_signal_handlers(self, name: str) -> Callable[[], None]:
        """Make SIGTERM / SIGINT stop the run (a second one forces); return an undo."""
        if threading.current_thread() is not threading.main_thread():
            return _nothing

        def on_signal(sig: int) -> None:
            log.info("%s: %s received", name, signal.Signals(sig).name)
            self.request_stop(force=self.stopping.is_set())

        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self.loop.add_signal_handler(sig, on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):
                continue
            installed.append(sig)

        def restore() -> None:
            for sig in installed:
                with contextlib.suppress(Exception):
                    self.loop.remove_signal_handler(sig)

        return restore


async def serve(
    svc: Service,
    run: Run,
    *,
    host: str,
    port: int,
    registrar: Registrar | None,
    drain_timeout: float,
    drain_delay: float,
    advertise_host: str | None,
    handle_signals: bool,
) -> None:
    """Run ``svc`` from STARTING to TERMINATED (or FAILED); see :meth:`Service.serve`."""
    from distsys.service._server import advertised_host, bind_socket, make_server

    lifecycle = svc.lifecycle
    server: Server | None = None
    task: asyncio.Task[None] | None = None
    sock: socket.socket | None = None
    restore = run.install_signal_handlers(svc.name) if handle_signals else _nothing
    try:
        sock = bind_socket(host, port)
        bound_host, bound_port = sock.getsockname()[:2]
        svc._address = (bound_host, bound_port)
        server = run.server = make_server(svc, drain_timeout=drain_timeout)
        task = asyncio.create_task(_run_server(server, sock), name=f"uvicorn {svc.name}")
        await _first(server.listening.wait(), task)
        if task.done():
            task.result()
            raise LifecycleError(f"{svc.name} stopped while starting", lifecycle.state)
        if registrar is not None and not run.stopping.is_set():
            svc._registrar = registrar
            await registrar.start(svc._instance_at(advertise_host or advertised_host(bound_host)))
        if not run.stopping.is_set():
            lifecycle.transition(State.RUNNING)
            log.info("%s %s serving on %s", svc.name, svc.instance_id, svc.url)
            await _first(run.stopping.wait(), task)
            if task.done():
                task.result()
                raise LifecycleError(f"{svc.name}: the server stopped by itself", lifecycle.state)
        lifecycle.transition(State.STOPPING)
        log.info("%s %s draining", svc.name, svc.instance_id)
        if registrar is not None:
            await registrar.drain()
            if drain_delay:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(run.hurry.wait(), drain_delay)
            await registrar.aclose()
        server.should_exit = True  # uvicorn: close the socket, drain, lifespan shutdown
        if run.hurry.is_set():
            server.force_exit = True
        await task
        lifecycle.transition(State.TERMINATED)
        log.info("%s %s stopped", svc.name, svc.instance_id)
    except asyncio.CancelledError:
        await _abort(server, task, registrar)
        for state in (State.STOPPING, State.TERMINATED):
            if lifecycle.can_move(state):
                lifecycle.transition(state)
        raise
    except BaseException as exc:
        await _abort(server, task, registrar)
        cause = svc._startup_failure or exc
        if not lifecycle.state.final:
            lifecycle.transition(State.FAILED, cause)
        if cause is not exc:
            raise cause from exc
        raise
    finally:
        restore()
        run.server = None
        if sock is not None:
            sock.close()  # uvicorn closes it after serving, not after a failed start


def _nothing() -> None:
    return None


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class _StartupFailedError(Exception):
    """uvicorn called sys.exit() during startup (a failed lifespan, an unusable socket)."""


async def _run_server(server: Server, sock: socket.socket) -> None:
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exc:
        # uvicorn exits the process when startup fails; a library must not. SystemExit
        # escaping a task would also stop the event loop itself.
        raise _StartupFailedError(f"the server failed to start (exit code {exc.code})") from None


async def _first(waiting: Awaitable[object], task: asyncio.Task[None]) -> None:
    """Wait until ``waiting`` completes or ``task`` ends, whichever is first."""
    waiter = asyncio.ensure_future(waiting)
    try:
        await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not waiter.done():
            waiter.cancel()
            await asyncio.gather(waiter, return_exceptions=True)


async def _abort(
    server: Server | None, task: asyncio.Task[None] | None, registrar: Registrar | None
) -> None:
    """Stop at once after a failure or a cancellation: deregister, close, skip the drain."""
    if registrar is not None:
        try:
            await registrar.aclose()
        except Exception:
            log.exception("deregistering after a failure failed")
    if server is not None and task is not None and not task.done():
        server.should_exit = True
        server.force_exit = True
        await asyncio.gather(task, return_exceptions=True)
