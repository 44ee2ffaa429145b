"""distsys load: an open-loop schedule, statuses and errors counted, percentiles printed."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from distsys.cli import main
from distsys.cli._load_command import percentile, run_load
from tests.gateway.upstream import Upstream


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        status = 500 if self.path == "/fail" else 200
        body = b"ok"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_table_reports_rate_statuses_and_latency(server: int) -> None:
    result = CliRunner().invoke(
        main,
        [
            "load", f"http://127.0.0.1:{server}/", "--rate", "100", "--duration", "0.3",
            "--connections", "4", "--header", "X-Test: 1",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert re.search(r"scheduled\s+│\s+30 ", result.output)
    assert re.search(r"status 200\s+│\s+30 ", result.output)
    for label in ("achieved rate", "latency p50", "latency p90", "latency p99", "latency max"):
        assert label in result.output


def test_bad_options_are_refused(server: int) -> None:
    runner = CliRunner()
    url = f"http://127.0.0.1:{server}/"
    assert runner.invoke(main, ["load", url, "--rate", "0"]).exit_code == 2
    assert runner.invoke(main, ["load", url, "--rate", "1", "--duration", "2x"]).exit_code == 2
    assert runner.invoke(main, ["load", url, "--rate", "1", "--header", "nocolon"]).exit_code == 2
    refused = runner.invoke(main, ["load", "https://x/", "--rate", "1", "--duration", "1"])
    assert refused.exit_code == 1
    assert "http://" in refused.output


async def test_run_load_counts_statuses_and_errors() -> None:
    upstream = await Upstream().start()
    try:
        report = await run_load(
            f"http://127.0.0.1:{upstream.port}/status/503", rate=200, duration=0.1, timeout=5
        )
        assert report.scheduled == report.completed == 20
        assert report.statuses == {503: 20}
        assert len(report.latencies) == 20
        assert report.latencies == sorted(report.latencies)
    finally:
        await upstream.aclose()
    refused = await run_load(f"http://127.0.0.1:{_free_port()}/", rate=100, duration=0.05)
    assert refused.completed == 0
    assert refused.errors == {"ConnectError": 5}


async def test_a_slow_server_shows_in_latency_from_the_schedule() -> None:
    upstream = await Upstream().start()
    try:
        # One connection, 50 ms per answer, 100 requests/s: the queue grows, and the
        # latency (from each request's scheduled time) grows with it.
        report = await run_load(
            f"http://127.0.0.1:{upstream.port}/slow?ms=50", rate=100, duration=0.2,
            connections=1, timeout=10,
        )  # fmt: skip
        assert report.completed == 20
        assert report.latencies[-1] > 0.5  # the last one waited for 19 before it
    finally:
        await upstream.aclose()


def test_percentile() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([], 0.5) == 0.0
    assert percentile([7.0], 0.9) == 7.0
