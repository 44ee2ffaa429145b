"""make_balancer: names, defaults and option checks."""

from __future__ import annotations

import pytest

from distsys.balancer import (
    BALANCERS,
    DEFAULT_BALANCER,
    ConsistentHashBalancer,
    LeastOutstandingBalancer,
    P2CEWMABalancer,
    RandomBalancer,
    RoundRobinBalancer,
    make_balancer,
)
from distsys.errors import ArgumentTypeError, InvalidArgumentError

from .support import make_instances


def test_names() -> None:
    assert dict(BALANCERS) == {
        "round_robin": RoundRobinBalancer,
        "random": RandomBalancer,
        "least_outstanding": LeastOutstandingBalancer,
        "p2c_ewma": P2CEWMABalancer,
        "consistent_hash": ConsistentHashBalancer,
    }
    for name, cls in BALANCERS.items():
        assert cls.name == name
        assert type(make_balancer(name)) is cls


def test_the_default_is_p2c_ewma() -> None:
    assert DEFAULT_BALANCER == "p2c_ewma"
    balancer = make_balancer(instances=make_instances(2))
    assert isinstance(balancer, P2CEWMABalancer)
    assert len(balancer.instances) == 2


def test_the_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        BALANCERS["mine"] = RoundRobinBalancer  # type: ignore[index]


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        make_balancer("round-robin")
    error = raised.value
    assert error.field == "balancer"
    for name in BALANCERS:
        assert repr(name) in str(error)
    assert "did you mean 'round_robin'?" in str(error)
    with pytest.raises(ArgumentTypeError) as raised:
        make_balancer(None)  # type: ignore[arg-type]
    assert raised.value.field == "balancer"


def test_an_unknown_option_names_itself_and_the_accepted_ones() -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        make_balancer("round_robin", factor=1.5)
    assert raised.value.field == "factor"
    assert "panic_threshold" in str(raised.value)
    with pytest.raises(InvalidArgumentError) as raised:
        make_balancer("consistent_hash", decay=3)
    assert raised.value.field == "decay"


def test_options_reach_the_balancer() -> None:
    balancer = make_balancer("consistent_hash", make_instances(3), factor=2, vnodes=10)
    assert isinstance(balancer, ConsistentHashBalancer)
    assert balancer.ring.vnodes == 10
    assert balancer.ring.statistics().points == 30
