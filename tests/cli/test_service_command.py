"""distsys service run: port 0 registers the real port; ASGI apps are wrapped; bad targets."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from distsys.cli import main
from distsys.registry import Status, open_registry
from tests.service.wire import ServiceProcess, request


async def test_run_on_port_0_registers_the_real_port(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    service = await ServiceProcess.start(
        "tests.service.apps:svc", "--port", "0", "--registry", url, "--access-log"
    )
    try:
        assert service.port != 0
        assert f"registered in {url}" in service.lines[-1]
        async with open_registry(url) as registry:
            (instance,) = await registry.instances("apps")
            assert (instance.host, instance.port) == ("127.0.0.1", service.port)
            assert instance.metadata["version"] == "0.9"
            assert instance.status is Status.UP
            hello = await request(service.port, "GET", "/hello", headers={"X-Request-ID": "cli-1"})
            assert hello.json() == {"message": "hello"}
            service.proc.send_signal(signal.SIGTERM)
            code, _, err = await service.wait()
            assert code == 0, err
            assert await registry.instances("apps") == []
        assert "cli-1 GET /hello 200" in err  # --access-log: one line per request, with its id
    finally:
        service.kill()


async def test_run_calls_a_factory() -> None:
    service = await ServiceProcess.start("--factory", "tests.service.apps:make")
    try:
        assert service.lines[-1].startswith("made 1.1 serving on")
        assert (await request(service.port, "GET", "/hello")).json() == {"message": "made"}
        service.proc.send_signal(signal.SIGTERM)
        code, _, err = await service.wait()
        assert code == 0, err
    finally:
        service.kill()


async def test_run_wraps_a_plain_asgi_app(tmp_path: Path) -> None:
    service = await ServiceProcess.start("tests.service.apps:plain_asgi", "--name", "plain")
    try:
        assert service.lines[-1].startswith("plain 0.0.0 serving on http://127.0.0.1:")
        reply = await request(service.port, "GET", "/anything")
        assert reply.body == b"plain"
        assert "x-request-id" in reply.headers
        assert (await request(service.port, "GET", "/healthz")).json()["status"] == "ok"
        assert (
            "http_requests_total" in (await request(service.port, "GET", "/metrics")).body.decode()
        )
        service.proc.send_signal(signal.SIGTERM)
        code, _, err = await service.wait()
        assert code == 0, err
    finally:
        service.kill()


@pytest.mark.parametrize(
    ("target", "complaint"),
    [
        ("tests.service.apps", "expected module:attribute"),
        ("tests.service.nothing_here:svc", "cannot import 'tests.service.nothing_here'"),
        ("tests.service.apps:missing", "has no attribute 'missing'"),
        ("tests.service.apps:not_an_app", "is a int, not a Service or an ASGI app"),
    ],
)
def test_a_bad_target_is_refused_naming_it(target: str, complaint: str) -> None:
    outcome = CliRunner().invoke(main, ["service", "run", target])
    assert outcome.exit_code == 2
    assert complaint in outcome.output


def test_a_port_in_use_fails_with_exit_code_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        args = ["service", "run", "--factory", "tests.service.apps:make", "--port", port]
        outcome = CliRunner().invoke(main, args)
    assert outcome.exit_code == 1
    assert "made failed: " in outcome.output
    assert "in use" in outcome.output


def test_a_bad_registry_url_is_refused() -> None:
    outcome = CliRunner().invoke(
        main, ["service", "run", "tests.service.apps:plain_asgi", "--registry", "sqlit:///x.db"]
    )
    assert outcome.exit_code == 1
    assert "did you mean sqlite://" in outcome.output


def test_service_appears_in_the_help() -> None:
    outcome = CliRunner().invoke(main, ["--help"])
    assert "service" in outcome.output
    run_help = CliRunner().invoke(main, ["service", "run", "--help"])
    for option in ("--host", "--port", "--registry", "--drain-timeout"):
        assert option in run_help.output
