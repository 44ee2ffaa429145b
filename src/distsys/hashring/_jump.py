"""jump_hash: Lamping and Veach's jump consistent hash.

"A Fast, Minimal Memory, Consistent Hash Algorithm" (2014) maps a 64-bit key to one of
``buckets`` numbered buckets with no table at all: a 64-bit linear congruential
generator seeded with the key decides, jump by jump, the last bucket count at which the
key changed bucket. Growing from ``b`` to ``b + 1`` buckets moves exactly the keys that
now land in bucket ``b`` (about ``1/(b+1)`` of them) and nothing else.

The arithmetic follows the paper's C++ reference bit for bit (the float division is an
IEEE-754 double), so its published test vectors hold and any port agrees.
"""

from __future__ import annotations

from typing import Final

from xxhash import xxh3_64_intdigest

from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.hashring._hashing import Key, hash_key

__all__ = ["jump_hash"]

MAX_BUCKETS: Final = (1 << 31) - 1  # the reference takes an int32 bucket count
_MASK: Final = (1 << 64) - 1
_MULTIPLIER: Final = 2862933555777941757
_TWO_TO_31: Final = float(1 << 31)


def jump_hash(key: Key, buckets: int) -> int:
    """Return the bucket, in ``[0, buckets)``, that ``key`` belongs to.

    Args:
        key: an ``int`` is the 64-bit key itself, as in the paper (a negative int from
            ``-2**63`` is read as its two's complement, as Java's ``long`` would be); a
            ``str`` or bytes-like key is first hashed with :func:`hash_key` (XXH3-64 of
            its UTF-8 or raw bytes). An int is used as is, so hash it yourself
            (``jump_hash(hash_key(n), b)``) if your ints are not already well spread.
        buckets: the number of buckets, an int from 1 to ``2**31 - 1``.

    Raises:
        InvalidArgumentError: ``buckets`` is out of range, or an int ``key`` does not fit
            in 64 bits.
        ArgumentTypeError: ``buckets`` is not an int, or ``key`` is of another type.
    """
    accepted = f"an int from 1 to {MAX_BUCKETS}"
    if isinstance(buckets, bool) or not isinstance(buckets, int):
        raise ArgumentTypeError("buckets", buckets, accepted)
    if not 1 <= buckets <= MAX_BUCKETS:
        raise InvalidArgumentError("buckets", buckets, accepted)
    if type(key) is str:  # the common case, without hash_key's type dispatch
        try:
            state = xxh3_64_intdigest(key.encode())
        except UnicodeEncodeError:
            state = hash_key(key)  # raises, naming the key
    elif isinstance(key, int) and not isinstance(key, bool):
        if not -(1 << 63) <= key <= _MASK:
            raise InvalidArgumentError("key", key, "an int from -2**63 to 2**64 - 1")
        state = key & _MASK
    else:
        state = hash_key(key)
    bucket, jump = -1, 0
    while jump < buckets:
        bucket = jump
        state = (state * _MULTIPLIER + 1) & _MASK
        jump = int((bucket + 1) * (_TWO_TO_31 / ((state >> 33) + 1)))
    return bucket
