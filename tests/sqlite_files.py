"""Looking into the SQLite files of the ``sqlite://`` backends from a test."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path


def url_of(path: Path) -> str:
    """The ``sqlite://`` URL of ``path``."""
    return f"sqlite:///{path}"


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Run ``sql`` on the file with a connection of its own; return every row."""
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


def files_in(directory: Path) -> list[str]:
    """The names of the files in ``directory``, sorted."""
    return sorted(p.name for p in directory.iterdir())
