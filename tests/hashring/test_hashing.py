"""hash_key: the exact hash and byte encodings placement rests on (interop vectors)."""

from __future__ import annotations

import enum

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.hashring import hash_key
from distsys.hashring._hashing import node_name, vnode_points

# XXH3_64bits(seed 0) of the encodings; the first two are the reference implementation's
# published values, so a Go or Java peer can check its own hash against this table.
VECTORS = [
    ("", 0x2D06800538D394C2),
    ("a", 0xE6C632B61E964E1F),
    ("user:42", 0x9FC1E605FA7174AA),
    ("é", 0xF7940A006CF10CB3),  # UTF-8: b"\xc3\xa9"
    (b"\x00\xff", 0xA99B043A346C8BF3),
    (42, 0x1217CB28C0EF2191),  # b"42"
    (-7, 0xB496414FDC9ADF38),  # b"-7"
    (2**70, 0xE6D377BB6E3AAEDE),  # b"1180591620717411303424"
]


@pytest.mark.parametrize(("key", "expected"), VECTORS)
def test_hash_key_matches_the_documented_vectors(key: str | bytes | int, expected: int) -> None:
    assert hash_key(key) == expected


def test_vnode_points_hash_name_hash_index() -> None:
    assert vnode_points("10.0.0.1:8080", 3) == [
        0x16A198738B2D4C7F,
        0x9CBA2F6BF78628CF,
        0x24F5C4C0DFF3A5DC,
    ]
    assert vnode_points("10.0.0.1:8080", 2) == vnode_points("10.0.0.1:8080", 3)[:2]
    assert vnode_points("n", 1) == [hash_key("n#0")]


@given(st.text())
def test_a_str_hashes_as_its_utf8_bytes(text: str) -> None:
    try:
        data = text.encode()
    except UnicodeEncodeError:
        return
    assert hash_key(text) == hash_key(data) == hash_key(bytearray(data))
    assert hash_key(text) == hash_key(memoryview(data))


@given(st.integers(min_value=-(2**200), max_value=2**200))
def test_an_int_hashes_as_its_decimal_text(number: int) -> None:
    assert hash_key(number) == hash_key(str(number))
    assert 0 <= hash_key(number) < 2**64


def test_an_int_subclass_hashes_as_its_value() -> None:
    class Shard(enum.IntEnum):
        FIRST = 7

        def __str__(self) -> str:
            return "first"

    assert hash_key(Shard.FIRST) == hash_key(7)


@pytest.mark.parametrize("key", [True, False, None, 1.5, ("a",), object()])
def test_other_key_types_are_refused(key: object) -> None:
    with pytest.raises(ArgumentTypeError, match=r"key=.*a str, a bytes-like object or an int"):
        hash_key(key)  # type: ignore[arg-type]


def test_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="UTF-8"):
        hash_key("\ud800")


def test_an_int_too_long_for_decimal_text_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="bits"):
        hash_key(10**5000)


def test_node_names_are_non_empty_encodable_strings() -> None:
    assert node_name("a") == "a"
    with pytest.raises(ArgumentTypeError, match="node="):
        node_name(1)
    with pytest.raises(InvalidArgumentError, match="non-empty"):
        node_name("")
    with pytest.raises(InvalidArgumentError, match="UTF-8"):
        node_name("\udfff")
