"""Child processes of a demo: each in a process group of its own, its output in a file.

A child runs in a new session (so its own process group): Ctrl-C at the terminal goes to
the demo only, which then stops its children in order, and a signal sent to a child's
group reaches whatever that child started too. Stopping is SIGTERM to the group (the
child drains), a bounded wait, then SIGKILL to the group. Output goes to a log file, not
a pipe: a child never blocks on a pipe nobody reads, and the log is there to quote when
a child fails to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from distsys.errors import DistsysError

__all__ = ["Child", "ChildError"]

_POLL = 0.02  # seconds between looks at a child's log or exit status


class ChildError(DistsysError):
    """A child process did not start as expected (exited, or never said it was ready).

    Attributes:
        name: the child's name.
        log: the end of its output.
    """

    def __init__(self, name: str, reason: str, log: str) -> None:
        super().__init__(f"{name} {reason}; its last output:\n{log}")
        self.name = name
        self.log = log


class Child:
    """One command in a process group of its own. Not thread-safe (one event loop).

    Args:
        name: what the demo calls it (in messages).
        argv: the command.
        log: the file its stdout and stderr go to.
        cwd: its working directory.
        env: its environment (default: this process's).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log: Path,
        cwd: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,  # its own process group, away from the terminal
            )
        self.pid = self.process.pid
        self.started = time.monotonic()

    @property
    def running(self) -> bool:
        """Whether the process has not exited yet."""
        return self.process.poll() is None

    def output(self, tail: int = 4000) -> str:
        """Return the end of what it wrote."""
        try:
            return self.log.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    async def wait_for(self, pattern: str, *, timeout: float) -> re.Match[str]:
        """Wait until a line of its output matches ``pattern``; return the match.

        Raises:
            ChildError: it exited first, or ``timeout`` seconds passed.
        """
        compiled = re.compile(pattern, re.MULTILINE)
        give_up = time.monotonic() + timeout
        while True:
            found = compiled.search(self.output(tail=1 << 20))
            if found:
                return found
            if not self.running:
                raise ChildError(
                    self.name, f"exited with code {self.process.returncode}", self.output()
                )
            if time.monotonic() > give_up:
                raise ChildError(self.name, f"did not start within {timeout:g} s", self.output())
            await asyncio.sleep(_POLL)

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to its process group (nothing if the group is gone)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL its process group now and reap it (waits at most a few seconds)."""
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)

    async def exited(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for it to exit; return whether it did."""
        give_up = time.monotonic() + timeout
        while self.running:
            if time.monotonic() > give_up:
                return False
            await asyncio.sleep(_POLL)
        return True

    async def stop(self, timeout: float) -> bool:
        """SIGTERM its group, wait up to ``timeout`` s, then SIGKILL what is left.

        Returns:
            True if it exited on SIGTERM (drained), False if it had to be killed.
        """
        if not self.running:
            self.signal_group(signal.SIGKILL)  # a straggler the child left behind
            return True
        self.signal_group(signal.SIGTERM)
        drained = await self.exited(timeout)
        self.kill()  # the child's own children, if it left any; the child, if it hung
        return drained
