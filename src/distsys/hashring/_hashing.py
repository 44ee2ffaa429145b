"""The hash every placement decision rests on: XXH3-64 over a canonical byte encoding.

The scheme is part of the public contract, written down exactly so another process, or a
Go or Java peer, places keys identically (``docs/hashring.md`` repeats it):

- the hash is XXH3 64-bit (``XXH3_64bits``, seed 0), read as an unsigned 64-bit integer;
- a ``str`` is encoded as UTF-8 (a lone surrogate, which UTF-8 cannot encode, is refused);
- ``bytes`` and any other bytes-like object (``bytearray``, ``memoryview``) are hashed as
  they are;
- an ``int`` is encoded as its decimal text in ASCII (``-12`` is ``b"-12"``), so the key
  ``42`` and the key ``"42"`` are the same key; ``bool`` is refused, because ``True``
  is ambiguous between ``1`` and ``"True"``;
- virtual node ``i`` (counted from 0) of node ``name`` sits at the hash of the UTF-8 text
  ``f"{name}#{i}"``.

Python's built-in ``hash()`` is never used: it is salted per process.
"""

from __future__ import annotations

from typing import Final, TypeAlias

from xxhash import xxh3_64_intdigest

from distsys.errors import ArgumentTypeError, InvalidArgumentError

__all__ = ["Key", "hash_key", "node_name", "vnode_points"]

Key: TypeAlias = str | bytes | bytearray | memoryview | int
"""What can be placed on a ring: text, bytes-like data, or an int."""

KEY_ACCEPTED: Final = "a str, a bytes-like object or an int (not a bool)"
NODE_ACCEPTED: Final = "a non-empty str that UTF-8 can encode"


def hash_key(key: Key) -> int:
    """Return the unsigned 64-bit hash a ring places ``key`` by.

    Args:
        key: a ``str`` (hashed as UTF-8), a bytes-like object (hashed as is), or an
            ``int`` (hashed as its decimal text, so ``42`` and ``"42"`` agree).

    Returns:
        ``XXH3_64bits(encoding, seed=0)``, an int in ``[0, 2**64)``.

    Raises:
        ArgumentTypeError: ``key`` is of another type, a ``bool`` among them.
        InvalidArgumentError: ``key`` is a str UTF-8 cannot encode (a lone surrogate).
    """
    if isinstance(key, str):
        try:
            return xxh3_64_intdigest(key.encode())
        except UnicodeEncodeError as exc:
            raise InvalidArgumentError(
                "key", key, "a str UTF-8 can encode", detail=str(exc)
            ) from None
    if isinstance(key, bool):
        raise ArgumentTypeError("key", key, KEY_ACCEPTED)
    if isinstance(key, int):
        try:
            text = str(int(key))  # int(): a subclass may override __str__
        except ValueError:  # beyond sys.get_int_max_str_digits(); repr() would fail too
            raise InvalidArgumentError(
                "key",
                f"<an int of {key.bit_length()} bits>",
                "an int short enough to convert to decimal text (sys.get_int_max_str_digits())",
            ) from None
        return xxh3_64_intdigest(text.encode())
    try:
        return xxh3_64_intdigest(key)
    except (TypeError, ValueError, BufferError):
        raise ArgumentTypeError("key", key, KEY_ACCEPTED) from None


def node_name(node: object, field: str = "node") -> str:
    """Return ``node`` if it is a usable node name.

    Raises:
        ArgumentTypeError: ``node`` is not a str.
        InvalidArgumentError: ``node`` is empty or has a lone surrogate.
    """
    if not isinstance(node, str):
        raise ArgumentTypeError(field, node, NODE_ACCEPTED)
    if not node:
        raise InvalidArgumentError(field, node, NODE_ACCEPTED)
    try:
        node.encode()
    except UnicodeEncodeError:
        raise InvalidArgumentError(field, node, NODE_ACCEPTED) from None
    return node


def vnode_points(node: str, count: int) -> list[int]:
    """Return the ring positions of virtual nodes ``0 .. count-1`` of ``node``.

    A node's first ``k`` points do not depend on ``count``, so raising a node's weight
    only adds points, and lowering it only takes points away.
    """
    return [xxh3_64_intdigest(f"{node}#{i}".encode()) for i in range(count)]
