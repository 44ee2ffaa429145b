"""The binary format of shuffle, spill and cache files: length-prefixed pickle batches.

A file is a sequence of *frames*; a frame is an 8-byte little-endian length followed by
that many bytes of one pickle (protocol 5) of a batch — a list of records, or a dict of
``key: combiner`` for map-side combined output. Batching keeps pickling out of the
per-record path: one ``dumps`` per few thousand records, in C. The pickler runs in fast
mode (no memo: about 4x faster on batches of small tuples, at the cost of writing a
shared object once per reference); a batch that fast mode refuses (a cycle) is pickled
normally.
"""

from __future__ import annotations

import io
import pickle
import struct
from collections.abc import Iterator
from typing import Any, BinaryIO, Final

__all__ = ["HEADER", "dumps", "read_frames", "read_frame_at", "write_frame"]

HEADER: Final = struct.Struct("<Q")


def dumps(batch: Any) -> bytes:
    """Return the pickle of ``batch``, written without a memo when possible."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=5)
    pickler.fast = True  # no memo; refuses cycles, which we then pickle normally
    try:
        pickler.dump(batch)
    except (ValueError, RecursionError):
        return pickle.dumps(batch, protocol=5)
    return buffer.getvalue()


def write_frame(out: BinaryIO, batch: Any) -> int:
    """Append ``batch`` as one frame; return the bytes written."""
    data = dumps(batch)
    out.write(HEADER.pack(len(data)))
    out.write(data)
    return HEADER.size + len(data)


def read_frames(path: str, metrics: Any = None) -> Iterator[Any]:
    """Yield the batches stored in the file at ``path``, in order.

    Args:
        path: the file.
        metrics: a :class:`~distsys.dataflow.TaskMetrics` whose ``shuffle_read`` counts
            the bytes read, or None.
    """
    with open(path, "rb") as source:
        read = source.read
        while header := read(HEADER.size):
            (size,) = HEADER.unpack(header)
            data = read(size)
            if len(data) != size:
                raise EOFError(f"{path} ends inside a frame: the file is truncated")
            if metrics is not None:
                metrics.shuffle_read += HEADER.size + size
            yield pickle.loads(data)


def read_frame_at(source: BinaryIO, offset: int) -> tuple[Any, int]:
    """Return the batch of the frame at ``offset`` and the frame's size in bytes."""
    source.seek(offset)
    (size,) = HEADER.unpack(source.read(HEADER.size))
    return pickle.loads(source.read(size)), HEADER.size + size
