"""distsys gateway: check a configuration; run one, reload it on SIGHUP, stop it on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import select
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from click.testing import CliRunner

from distsys.cli import main
from distsys.registry import Instance, open_registry
from tests.gateway.client import get
from tests.gateway.upstream import Upstream

ROOT = Path(__file__).resolve().parents[2]


def test_check_prints_the_routes_of_a_valid_file() -> None:
    result = CliRunner().invoke(
        main, ["gateway", "--config", str(ROOT / "examples" / "gateway.toml"), "--check"]
    )
    assert result.exit_code == 0, result.output
    assert "the configuration is valid" in result.output
    assert "orders" in result.output


def test_an_invalid_file_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text('registry = "memory://"\n[[routes]]\nprefix = "/a"\n')
    result = CliRunner().invoke(main, ["gateway", "--config", str(path), "--check"])
    assert result.exit_code == 1
    assert "routes[0].service is missing" in result.output
    result = CliRunner().invoke(main, ["gateway", "--config", str(path)])
    assert result.exit_code == 1
    assert str(path) in result.output


def _config(registry: str, prefix: str) -> str:
    return textwrap.dedent(
        f"""
        registry = "{registry}"
        listen = "127.0.0.1:0"
        admin = "127.0.0.1:0"
        reload_interval = "0s"

        [[routes]]
        prefix = "{prefix}"
        service = "hello"
        """
    )


async def test_run_reload_on_sighup_and_stop_on_sigterm(tmp_path: Path) -> None:
    registry_url = f"sqlite:///{tmp_path / 'registry.db'}"
    path = tmp_path / "gateway.toml"
    path.write_text(_config(registry_url, "/v1"))
    upstream = await Upstream(name="h").start()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    async with open_registry(registry_url) as registry:
        await registry.register(Instance("hello", "h1", "127.0.0.1", upstream.port), ttl=30)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "distsys.cli", "gateway", "--config", str(path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            found = re.search(
                r"serving on http://127\.0\.0\.1:(\d+) \(admin http://127\.0\.0\.1:(\d+)\)", line
            )
            assert found, line
            port = int(found.group(1))
            assert (await get(port, "/v1/hello")).body == b"h /v1/hello"

            path.write_text(_config(registry_url, "/v2"))
            proc.send_signal(signal.SIGHUP)
            for _ in range(500):
                if (await get(port, "/v2/hello")).status == 200:
                    break
                await asyncio.sleep(0.01)
            assert (await get(port, "/v2/hello")).status == 200
            assert (await get(port, "/v1/hello")).status == 404

            proc.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == 0, err.decode()
            assert b"gateway stopped" in out
            assert b"configuration reloaded" in err
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await upstream.aclose()


def _first_line(fd: int, timeout: float) -> bytes:
    """Read from ``fd`` up to the first newline, waiting at most ``timeout`` seconds."""
    data = b""
    give_up = time.monotonic() + timeout
    while b"\n" not in data:
        left = give_up - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"no line within {timeout}s: {data!r}")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise AssertionError(f"end of output before a line: {data!r}")
        data += chunk
    return data


def test_sigterm_after_the_reader_of_stdout_went_away_exits_quietly(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(_config(f"sqlite:///{tmp_path / 'registry.db'}", "/v1"))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    read_end, write_end = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "distsys.cli", "gateway", "--config", str(path)],
            stdout=write_end, stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
    finally:
        os.close(write_end)
    try:
        try:
            assert b"serving on" in _first_line(read_end, 30)
        finally:
            os.close(read_end)  # "gateway stopped" now meets a closed pipe
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err.decode()
        assert b"could not start" not in err
        assert b"Traceback" not in err
        assert b"Exception ignored" not in err
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()


def test_sigterm_after_stdout_and_stderr_were_closed_exits_with_status_zero(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(_config(f"sqlite:///{tmp_path / 'registry.db'}", "/v1"))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "distsys.cli", "gateway", "--config", str(path)],
            stdout=out_write, stderr=err_write, env=env,
        )  # fmt: skip
    finally:
        os.close(out_write)
        os.close(err_write)
    try:
        try:
            assert b"serving on" in _first_line(out_read, 30)
        finally:
            os.close(out_read)
            os.close(err_read)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()


def test_a_listen_address_in_use_is_reported_as_a_start_failure(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = tmp_path / "gateway.toml"
        path.write_text(_config("memory://", "/v1").replace("127.0.0.1:0", f"127.0.0.1:{port}", 1))
        result = CliRunner().invoke(main, ["gateway", "--config", str(path)])
    assert result.exit_code == 1, result.output
    assert "the gateway could not start:" in result.output
    assert "ddress already in use" in result.output
