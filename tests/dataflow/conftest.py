"""Sessions shared by the dataflow tests: start processes once, reuse them everywhere."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from distsys.dataflow import Session, open_session


@pytest.fixture(scope="session")
def pool() -> Iterator[Session]:
    """Two worker processes, reused by every test that needs real processes."""
    with open_session(workers=2, progress=False) as session:
        yield session


@pytest.fixture(scope="session")
def inline() -> Iterator[Session]:
    """Tasks in this process, three partitions by default: the engine's logic, fast."""
    with open_session(workers=3, processes=False, progress=False) as session:
        yield session


@pytest.fixture(scope="session")
def tiny() -> Iterator[Session]:
    """Tasks in this process with a 2,000-byte memory limit: everything spills."""
    with open_session(workers=3, processes=False, progress=False, memory_limit=2000) as session:
        yield session
