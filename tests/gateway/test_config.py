"""Configuration: TOML to typed settings; every mistake refused naming its key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from distsys.errors import InvalidArgumentError
from distsys.gateway import GatewayConfig, GatewayConfigError, load_config, parse_config
from distsys.gateway._config import parse_duration, parse_size

ROOT = Path(__file__).resolve().parents[2]
BASE = 'registry = "memory://"\n'
ROUTE = '[[routes]]\nprefix = "/a"\nservice = "a"\n'


def refused(text: str) -> GatewayConfigError:
    with pytest.raises(GatewayConfigError) as caught:
        parse_config(BASE + text)
    return caught.value


def test_the_example_configuration_is_valid() -> None:
    config = load_config(ROOT / "examples" / "gateway.toml")
    assert [r.name for r in config.routes] == ["orders", "cart", "catalog-admin", "catalog"]
    assert config.limits.max_body_bytes == 16 * 1024 * 1024
    assert config.routes[0].timeout == 2.0
    assert config.routes[1].balancer == "consistent_hash"


def test_defaults() -> None:
    config = parse_config(BASE + ROUTE)
    assert isinstance(config, GatewayConfig)
    route = config.routes[0]
    assert (route.timeout, route.retries, route.balancer) == (30.0, 2, "p2c_ewma")
    assert route.breaker.failure_rate == 0.5
    assert config.listen == "127.0.0.1:8080"
    assert config.admin == "127.0.0.1:9901"
    assert config.limits.header_timeout == 10.0


def test_a_bad_duration_names_its_route_and_key() -> None:
    error = refused(ROUTE * 2 + '[[routes]]\nprefix = "/c"\nservice = "c"\ntimeout = "2x"\n')
    assert error.key == "routes[2].timeout"
    assert error.value == "2x"
    assert str(error).startswith("routes[2].timeout='2x' is not accepted: expected a duration")


def test_an_unknown_key_is_refused_with_a_suggestion() -> None:
    error = refused(ROUTE + "timout = 3\n")
    assert error.key == "routes[0].timout"
    assert "did you mean 'timeout'?" in str(error)
    assert refused("lisen = 'x'\n").key == "lisen"
    assert refused("[limits]\nmax_body = 1\n").key == "limits.max_body"
    assert refused(ROUTE + "[routes.breaker]\nwait_s = 1\n").key == "routes[0].breaker.wait_s"


def test_a_route_without_service_is_refused() -> None:
    error = refused('[[routes]]\nprefix = "/a"\n')
    assert error.key == "routes[0].service"
    assert error.missing
    assert "routes[0].service is missing" in str(error)


def test_the_registry_is_required_and_checked() -> None:
    with pytest.raises(GatewayConfigError, match="registry is missing"):
        parse_config(ROUTE)
    with pytest.raises(GatewayConfigError) as caught:
        parse_config('registry = "postgres://db"\n')
    assert caught.value.key == "registry"
    assert "memory://" in str(caught.value)


def test_a_duplicate_prefix_is_refused() -> None:
    error = refused(ROUTE + ROUTE.replace('"a"\n', '"b"\n'))
    assert error.key == "routes[1].prefix"
    assert "routes[0] matches the same requests" in str(error)


def test_same_prefix_on_other_methods_or_hosts_is_fine() -> None:
    text = ROUTE + 'methods = ["GET"]\n' + ROUTE + 'name = "w"\nmethods = ["POST"]\n'
    assert len(parse_config(BASE + text).routes) == 2
    text = ROUTE + ROUTE + 'name = "h"\nhost = "api.example.com"\n'
    assert len(parse_config(BASE + text).routes) == 2
    overlap = ROUTE + 'methods = ["GET"]\n' + ROUTE + 'name = "w"\n'
    assert refused(overlap).key == "routes[1].prefix"


def test_negative_limits_are_refused() -> None:
    assert refused("[limits]\nmax_body_bytes = -5\n").key == "limits.max_body_bytes"
    assert refused("[limits]\nheader_timeout = '-1s'\n").key == "limits.header_timeout"
    assert refused("[limits]\nmax_header_bytes = 10\n").key == "limits.max_header_bytes"
    assert refused("[limits]\nheader_timeout = 0\n").key == "limits.header_timeout"
    assert refused("[upstream]\nmax_connections = 0\n").key == "upstream.max_connections"
    assert refused(ROUTE + "retries = 0\n").key == "routes[0].retries"
    assert refused(ROUTE + "retries = '3'\n").key == "routes[0].retries"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('balancer = "p2c"\n', "routes[0].balancer"),
        ('balancer = "consistent_hash"\n', "routes[0].hash_on"),
        ('balancer = "consistent_hash"\nhash_on = "query:x"\n', "routes[0].hash_on"),
        ('hash_on = "header:X-User"\n', "routes[0].hash_on"),
        (
            'balancer = "consistent_hash"\nhash_on = "ip"\nhash_factor = 0.5\n',
            "routes[0].hash_factor",
        ),
        ('strip_prefix = true\nrewrite = "/b"\n', "routes[0].rewrite"),
        ('rewrite = "b"\n', "routes[0].rewrite"),
        ('methods = ["GE T"]\n', "routes[0].methods[0]"),
        ('host = "api.example.com:80"\n', "routes[0].host"),
        ("[routes.rate_limit]\nrate = 0\n", "routes[0].rate_limit.rate"),
        ("[routes.rate_limit]\nrate = 5\nburst = 0\n", "routes[0].rate_limit.burst"),
        ("[routes.rate_limit]\nrate = 5\nkey = 'cookie:x'\n", "routes[0].rate_limit.key"),
        (
            "[routes.rate_limit]\nrate = 5\nredis_url = 'http://x'\n",
            "routes[0].rate_limit.redis_url",
        ),
        ("[routes.rate_limit]\nburst = 5\n", "routes[0].rate_limit.rate"),
        ("[routes.breaker]\nfailure_rate = 1.5\n", "routes[0].breaker.failure_rate"),
        ("[routes.breaker]\nwindow = '0s'\n", "routes[0].breaker.window"),
    ],
)
def test_route_settings_are_checked(text: str, key: str) -> None:
    assert refused(ROUTE + text).key == key


def test_bad_paths_are_refused() -> None:
    assert refused('[[routes]]\nprefix = "api"\nservice = "a"\n').key == "routes[0].prefix"
    assert refused('[[routes]]\nprefix = "/a/../b"\nservice = "a"\n').key == "routes[0].prefix"
    assert refused('[[routes]]\nprefix = "/a?x"\nservice = "a"\n').key == "routes[0].prefix"
    assert refused('[[routes]]\nprefix = "/a"\nservice = "bad name"\n').key == "routes[0].service"


def test_route_names_must_differ() -> None:
    text = ROUTE + 'name = "x"\n' + ROUTE.replace("/a", "/b") + 'name = "x"\n'
    assert refused(text).key == "routes[1].name"


def test_the_admin_api_must_listen_on_loopback() -> None:
    error = refused('admin = "0.0.0.0:9901"\n')
    assert error.key == "admin"
    assert "loopback" in str(error)
    assert parse_config(BASE + 'admin = "[::1]:0"\n').admin == "[::1]:0"
    assert refused('listen = "8080"\n').key == "listen"


def test_wrong_types_and_toml_syntax() -> None:
    assert refused("routes = 5\n").key == "routes"
    assert refused("[[routes]]\nprefix = 5\nservice = 'a'\n").key == "routes[0].prefix"
    with pytest.raises(GatewayConfigError, match="not valid TOML"):
        parse_config("registry = ")


def test_a_file_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(BASE + ROUTE + "timeout = 'soon'\n")
    with pytest.raises(GatewayConfigError) as caught:
        load_config(path)
    assert caught.value.source == str(path)
    assert str(caught.value).startswith(f"{path}: routes[0].timeout='soon'")
    assert isinstance(caught.value, InvalidArgumentError)  # and a ValueError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(1, 1.0), (0.5, 0.5), ("250ms", 0.25), ("2s", 2.0), ("1.5m", 90.0), ("1h", 3600.0)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["2x", "", "s", "-1s", True, "nan s", "1 s s"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [(10, 10), ("512KiB", 512 * 1024), ("16MiB", 16 << 20), ("1GB", 10**9), ("1.5KB", 1500)],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["12 parsecs", -1, "1.5B", 1.5, "MiB"])
def test_bad_sizes(text: object) -> None:
    with pytest.raises(ValueError, match="a size"):
        parse_size(text)
