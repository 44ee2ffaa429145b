"""``distsys demo system``: real processes, a replica killed under load, nothing left behind.

Each test runs the demo as a process of its own (as a user does), reads the pids and the
temporary directory it prints, and checks after it exits that none of those processes
is alive and the directory is gone.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from distsys.cli import _demo, main
from distsys.cli._system_demo import system_demo

ROOT = Path(__file__).resolve().parents[2]
WAIT = 90.0  # the bound on one demo run on a busy machine (it takes about 12 s)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True  # (a PermissionError would mean the pid was reused by someone else's)


def left_behind(output: str) -> tuple[list[int], Path]:
    """Return the child pids the demo printed and its directory."""
    pids = sorted({int(p) for p in re.findall(r"\bpid (\d+)", output)})
    found = re.search(r"sqlite:///(\S+)/registry\.db", output)
    assert found, output
    return pids, Path(found.group(1))


class Demo:
    """``distsys demo system ...`` in a process of its own, its output read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.output = ""

    @classmethod
    async def start(cls, *args: str) -> Demo:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "distsys.cli", "demo", "system", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "COLUMNS": "120", "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        return cls(proc)

    async def wait_for(self, pattern: str) -> None:
        assert self.proc.stdout is not None
        async with asyncio.timeout(WAIT):
            while not re.search(pattern, self.output):
                line = await self.proc.stdout.readline()
                if not line:
                    raise AssertionError(f"the demo ended before {pattern!r}:\n{self.output}")
                self.output += line.decode()

    async def finish(self) -> int:
        assert self.proc.stdout is not None
        async with asyncio.timeout(WAIT):
            self.output += (await self.proc.stdout.read()).decode()
            return await self.proc.wait()

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


async def test_a_replica_killed_under_load_fails_no_request_after_the_breaker() -> None:
    demo = await Demo.start("--phase", "1.5", "--rate", "100")
    try:
        code = await demo.finish()
    finally:
        demo.kill()
    out = demo.output
    assert code == 0, out
    pids, directory = left_behind(out)
    assert len(pids) == 5, out  # three replicas, the gateway, the replacement
    for pattern in (
        r"replica 1 +http://127\.0\.0\.1:\d+ +catalog-[0-9a-f]{8} +pid \d+",
        r"gateway +http://127\.0\.0\.1:\d+ +admin http://127\.0\.0\.1:\d+",
        r"SIGKILL replica 2 \(pid \d+\) at \+0\.4 s",
        r"gateway: \d+ upstream errors? \(.*connect.*\), each retried elsewhere",
        r"1 steady +150 +150 +0 +0 ",  # the summary table: sent, ok, failed, upstream errors
        r"2 kill replica 2 +150 +150 +0 +[1-9]",
        r"3 routed around +150 +150 +0 ",
        r"4 replacement +150 +150 +0 ",
        r"replica 2 .*(open|lease expired).* SIGKILLed",
        r"replica 4 +- +- +- +[1-9]\d* .*replacement",  # the replacement took traffic
        r"after it: 0 of 300 failed",
        r"5 processes started, 0 left; \S+ removed",
    ):
        assert re.search(pattern, out), f"{pattern!r} not in:\n{out}"
    assert not [pid for pid in pids if alive(pid)], out
    assert not directory.exists()


@pytest.mark.parametrize(
    ("signum", "code", "said"),
    [
        (signal.SIGINT, 130, "interrupted: every process stopped"),  # Ctrl-C
        (signal.SIGTERM, 143, "ended by SIGTERM: every process stopped"),
    ],
)
async def test_a_signal_stops_every_process_and_removes_the_directory(
    signum: int, code: int, said: str
) -> None:
    demo = await Demo.start("--phase", "2", "--rate", "50")
    try:
        await demo.wait_for(r"SIGKILL replica 2")  # mid-run: all processes are up
        demo.proc.send_signal(signum)  # to the demo only, as the terminal's Ctrl-C is
        exit_code = await demo.finish()
    finally:
        demo.kill()
    out = demo.output
    assert exit_code == code, out
    assert said in out
    assert re.search(r"4 processes started, 0 left; \S+ removed", out), out
    pids, directory = left_behind(out)
    assert len(pids) == 4, out
    assert not [pid for pid in pids if alive(pid)], out
    assert not directory.exists()


def test_it_is_the_last_scenario_so_plain_demo_ends_with_it() -> None:
    assert _demo.SCENARIOS[-1] is system_demo
    assert _demo.demo.commands["system"] is system_demo


def test_its_options_are_checked() -> None:
    outcome = CliRunner().invoke(main, ["demo", "system", "--replicas", "1"])
    assert outcome.exit_code == 2
    assert "--replicas" in outcome.output
    help_text = CliRunner().invoke(main, ["demo", "system", "--help"]).output
    for option in ("--rate", "--phase", "--replicas"):
        assert option in help_text
