"""The real servers that backend tests use answer their own protocols (CI plumbing)."""

from __future__ import annotations

import json
import socket

import pytest

from tests.conftest import BACKENDS


def _exchange(name: str, payload: bytes, *, until: bytes) -> bytes:
    host, port = BACKENDS[name]
    with socket.create_connection((host, port), timeout=5.0) as sock:
        if payload:
            sock.sendall(payload)
        data = b""
        while until not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data


@pytest.mark.backend("redis")
def test_redis_answers_ping() -> None:
    assert _exchange("redis", b"PING\r\n", until=b"\r\n").startswith(b"+PONG")


@pytest.mark.backend("nats")
def test_nats_announces_jetstream() -> None:
    line = _exchange("nats", b"", until=b"\r\n")
    assert line.startswith(b"INFO ")
    info = json.loads(line[5:].split(b"\r\n")[0])
    assert info.get("jetstream") is True


@pytest.mark.backend("etcd")
def test_etcd_reports_its_version() -> None:
    host, port = BACKENDS["etcd"]
    request = f"GET /version HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode()
    response = _exchange("etcd", request, until=b"}")
    body = response.split(b"\r\n\r\n", 1)[1]
    assert "etcdserver" in json.loads(body)
