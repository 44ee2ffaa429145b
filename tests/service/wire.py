"""Test helpers: a plain HTTP/1.1 client on asyncio streams, and a service served in-process.

The client is deliberately tiny and independent of distsys's own HTTP client: tests of
the server should not depend on the client they might share a bug with.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distsys.service import Service, State

WAIT = 10.0  # the bound on every wait in these tests (a hung test fails instead of blocking)
PROCESS_WAIT = 30.0  # a process of its own may take a while to import and start on a busy CI
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, host: str = "127.0.0.1") -> Connection:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), WAIT)
        return cls(reader, writer)

    async def send(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        json_body: Any = None,
    ) -> None:
        if json_body is not None:
            body = json.dumps(json_body).encode()
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        await self.writer.drain()

    async def read(self, *, head: bool = False) -> Reply:
        async with asyncio.timeout(WAIT):
            status_line = await self.reader.readline()
            if not status_line:
                raise ConnectionError("the server closed the connection")
            status = int(status_line.split()[1])
            headers: dict[str, str] = {}
            while (line := await self.reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            if head:
                return Reply(status, headers)
            if headers.get("transfer-encoding") == "chunked":
                return Reply(status, headers, await self._chunks())
            length = int(headers.get("content-length", "0"))
            body = await self.reader.readexactly(length) if length else b""
            return Reply(status, headers, body)

    async def _chunks(self) -> bytes:
        body = b""
        while size := int((await self.reader.readline()).split(b";")[0], 16):
            body += await self.reader.readexactly(size)
            await self.reader.readline()
        await self.reader.readline()  # the empty line after the last chunk
        return body

    async def request(self, method: str, path: str, **options: Any) -> Reply:
        await self.send(method, path, **options)
        return await self.read(head=method == "HEAD")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def request(port: int, method: str, path: str, **options: Any) -> Reply:
    """Send one request on a fresh connection and return the reply."""
    conn = await Connection.open(port)
    try:
        return await conn.request(method, path, **options)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def serving(svc: Service, **options: Any) -> AsyncIterator[int]:
    """Serve ``svc`` on a free loopback port for the block; yield the port; stop after."""
    options.setdefault("handle_signals", False)
    options.setdefault("drain_timeout", 2.0)  # a request left hanging is cancelled, not waited for
    task = asyncio.create_task(svc.serve("127.0.0.1", 0, **options))
    try:
        waiter = asyncio.ensure_future(svc.lifecycle.wait_for(State.RUNNING))
        done, _ = await asyncio.wait({waiter, task}, timeout=WAIT, return_when="FIRST_COMPLETED")
        if task in done:
            waiter.cancel()
            task.result()
        assert waiter in done, "the service did not reach RUNNING"
        assert svc.address is not None
        yield svc.address[1]
    finally:
        svc.stop()
        await asyncio.wait_for(asyncio.shield(task), WAIT)


class ServiceProcess:
    """``distsys service run ...`` in a process of its own, read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.port = 0
        self.lines: list[str] = []

    @classmethod
    async def start(cls, *args: str, env: Mapping[str, str] | None = None) -> ServiceProcess:
        """Start it and wait for its "serving on http://host:port" line."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "distsys.cli", "service", "run", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {})}, cwd=ROOT,
        )  # fmt: skip
        started = cls(proc)
        found = await started.wait_for_line(r"serving on http://127\.0\.0\.1:(\d+)")
        started.port = int(found.group(1))
        return started

    async def wait_for_line(self, pattern: str) -> re.Match[str]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(PROCESS_WAIT):
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    stderr = await self.proc.stderr.read() if self.proc.stderr else b""
                    raise AssertionError(f"no line matching {pattern!r}: {stderr.decode()}")
                line = raw.decode().rstrip("\n")
                self.lines.append(line)
                if found := re.search(pattern, line):
                    return found

    async def wait(self) -> tuple[int, str, str]:
        """Wait for it to exit; return its exit code, the rest of stdout, and stderr."""
        out, err = await asyncio.wait_for(self.proc.communicate(), PROCESS_WAIT)
        assert self.proc.returncode is not None
        return self.proc.returncode, out.decode(), err.decode()

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
