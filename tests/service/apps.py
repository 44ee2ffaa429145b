"""Apps that tests serve in processes of their own with ``distsys service run``.

``/slow`` announces on stdout that it started, then waits until the file named by
``$DISTSYS_TEST_RELEASE`` exists: the test decides when it finishes, so the drain test is
deterministic without sleeping.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from distsys.service import Service

svc = Service("apps", "0.9")


@svc.get("/hello")
async def hello() -> dict[str, str]:
    return {"message": "hello"}


@svc.get("/slow")
async def slow() -> dict[str, str]:
    release = Path(os.environ["DISTSYS_TEST_RELEASE"])
    print("slow request started", flush=True)
    async with asyncio.timeout(60):  # a bound, so a broken test cannot hang the process
        # The test (another process) creates the file: there is no event to wait on.
        while not release.exists():  # noqa: ASYNC110, ASYNC240 - a stat() a few ms apart
            await asyncio.sleep(0.005)
    return {"slow": "done"}


def make() -> Service:
    """A fresh service each call (``--factory``): a Service object is served only once."""
    fresh = Service("made", "1.1")

    @fresh.get("/hello")
    async def made_hello() -> dict[str, str]:
        return {"message": "made"}

    return fresh


async def plain_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI app (no lifespan), for wrapping from the command line."""
    if scope["type"] != "http":
        raise RuntimeError("lifespan is not supported here")
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")],
        }
    )
    await send({"type": "http.response.body", "body": b"plain"})


not_an_app = 42

if __name__ == "__main__":  # pragma: no cover - for trying it by hand
    print("run me with: distsys service run tests.service.apps:svc", file=sys.stderr)
