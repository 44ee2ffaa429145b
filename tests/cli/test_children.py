"""Child: a process in a group of its own, waited for by its output, stopped group-wide."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from distsys.cli._children import Child, ChildError
from tests.conftest import wait_until

WAIT = 30.0

# Prints "ready <pid of a grandchild>", then sleeps; with "stubborn" it ignores SIGTERM.
SCRIPT = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    if "stubborn" in sys.argv:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    print("ready", grandchild.pid, flush=True)
    time.sleep(60)
    """
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def start(tmp_path: Path, *args: str) -> Child:
    argv = [sys.executable, "-c", SCRIPT, *args]
    return Child("sleeper", argv, log=tmp_path / "sleeper.log", cwd=tmp_path)


async def test_stop_drains_on_sigterm_and_takes_the_group_with_it(tmp_path: Path) -> None:
    child = start(tmp_path)
    try:
        grandchild = int((await child.wait_for(r"ready (\d+)", timeout=WAIT)).group(1))
        assert child.running
        assert os.getpgid(child.pid) == child.pid != os.getpgid(0)  # a group of its own
        assert await child.stop(WAIT) is True  # SIGTERM ended it
        assert not child.running
        assert child.process.returncode == -signal.SIGTERM
        wait_until(lambda: not alive(grandchild), timeout=WAIT)  # the group was signalled
    finally:
        child.kill()


async def test_stop_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    child = start(tmp_path, "stubborn")
    try:
        await child.wait_for(r"ready", timeout=WAIT)
        assert await child.stop(0.3) is False
        assert child.process.returncode == -signal.SIGKILL
    finally:
        child.kill()


async def test_wait_for_reports_an_early_exit_with_the_output(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "print('no luck'); raise SystemExit(3)"]
    child = Child("quitter", argv, log=tmp_path / "quitter.log", cwd=tmp_path)
    with pytest.raises(ChildError, match=r"quitter exited with code 3") as caught:
        await child.wait_for(r"ready", timeout=WAIT)
    assert "no luck" in caught.value.log
    assert caught.value.name == "quitter"


async def test_wait_for_gives_up_after_its_timeout(tmp_path: Path) -> None:
    child = start(tmp_path)
    try:
        with pytest.raises(ChildError, match=r"did not start within 0\.1 s"):
            await child.wait_for(r"never printed", timeout=0.1)
    finally:
        child.kill()
    assert not child.running
    assert await child.stop(1.0) is True  # stopping a stopped child is harmless
