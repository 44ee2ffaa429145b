"""hashkey and the naming of unhashable arguments."""

from __future__ import annotations

from typing import Any

import pytest

from distsys.cache import hashkey
from distsys.cache._keys import name_unhashable_argument
from distsys.errors import ArgumentTypeError


def test_positional_arguments_are_the_key() -> None:
    assert hashkey(1, "a") == (1, "a")
    assert hashkey() == ()


def test_keyword_arguments_are_sorted_by_name_after_a_marker() -> None:
    key = hashkey(1, b=2, a=3)
    assert key == hashkey(1, a=3, b=2)
    assert key != hashkey(1, 3, 2)
    assert key[1:] == (key[1], ("a", 3), ("b", 2))
    assert repr(key[1]) == "<kwargs>"
    assert hash(key) == hash(hashkey(1, a=3, b=2))


def test_the_marker_cannot_be_confused_with_an_argument() -> None:
    assert hashkey(1, ("a", 3)) != hashkey(1, a=3)


def f(a: Any, b: Any = None, *rest: Any, c: Any = None, **more: Any) -> None:
    """A function with every kind of parameter."""


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        (([],), {}, "a"),
        ((1, {}), {}, "b"),
        ((1, 2, 3, []), {}, "rest[1]"),
        ((1,), {"c": set()}, "c"),
        ((1,), {"extra": [1]}, "extra"),
    ],
)
def test_the_first_unhashable_argument_is_named(
    args: tuple[Any, ...], kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ArgumentTypeError) as info:
        name_unhashable_argument(f, args, kwargs)
    assert info.value.field == field
    assert "unhashable type" in str(info.value)


def test_hashable_arguments_raise_nothing() -> None:
    name_unhashable_argument(f, (1, 2, 3), {"c": 4, "x": (5,)})


def test_arguments_that_do_not_fit_the_signature_are_named_by_position() -> None:
    with pytest.raises(ArgumentTypeError) as info:
        name_unhashable_argument(lambda: None, (1, []), {})
    assert info.value.field == "args[1]"
    with pytest.raises(ArgumentTypeError) as info:
        name_unhashable_argument(len, ([],), {})  # a builtin binds fine
    assert info.value.field in {"obj", "args[0]"}
