"""The engine table: from an engine name to the executor that runs plans on it.

Engines are imported only when a session asks for one, so importing distsys never
imports Dask or PySpark. Each ``target`` is a ``"module:callable"`` that takes the
session's keyword options and returns an :class:`~distsys.dataflow.Executor`.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from distsys.dataflow._errors import EngineUnavailableError
from distsys.dataflow._executor import Executor
from distsys.errors import ArgumentTypeError, InvalidArgumentError

__all__ = ["ENGINES", "Engine", "open_executor"]


@dataclass(frozen=True, slots=True)
class Engine:
    """Where an engine's executor lives and what it needs.

    Attributes:
        target: ``"module:callable"`` returning an executor, or None (not implemented yet).
        library: the top-level module of the library it needs, or None.
        extra: the distsys extra that installs that library.
        summary: one line for people.
    """

    target: str | None
    library: str | None = None
    extra: str | None = None
    summary: str = ""


ENGINES: Mapping[str, Engine] = MappingProxyType(
    {
        "local": Engine(
            "distsys.dataflow._local:LocalExecutor",
            summary="worker processes on this machine, shuffling through local files",
        ),
        "dask": Engine(
            "distsys.dataflow._dask:DaskExecutor",
            "distributed",
            "dask",
            "a Dask cluster (dask.distributed): a LocalCluster, or scheduler_address=...",
        ),
        "spark": Engine(
            "distsys.dataflow._spark:SparkExecutor",
            "pyspark",
            "spark",
            "a Spark cluster (PySpark): local[*], or master=...",
        ),
    }
)


def open_executor(engine: str, **options: Any) -> Executor:
    """Create the executor of ``engine`` with its keyword ``options``.

    Raises:
        InvalidArgumentError: ``engine`` is not a known engine name.
        EngineUnavailableError: it is known but not implemented, or its library is missing.
    """
    if not isinstance(engine, str):
        raise ArgumentTypeError("engine", engine, f"an engine name: one of {_known()}")
    spec = ENGINES.get(engine)
    if spec is None:
        close = difflib.get_close_matches(engine, list(ENGINES), n=1, cutoff=0.5)
        raise InvalidArgumentError(
            "engine",
            engine,
            f"one of {_known()}",
            detail=f"did you mean {close[0]!r}?" if close else "",
        )
    if spec.target is None:
        raise EngineUnavailableError(
            engine,
            f"running plans on {spec.summary} is not implemented yet; use engine='local' "
            f"(it will need pip install 'distsys[{spec.extra}]')",
        )
    if spec.library is not None:
        try:
            importlib.import_module(spec.library)
        except ImportError:
            raise EngineUnavailableError(
                engine,
                f"it needs the {spec.library!r} library: pip install 'distsys[{spec.extra}]'",
            ) from None
    module, _, name = spec.target.partition(":")
    factory = getattr(importlib.import_module(module), name)
    executor: Executor = factory(**options)
    return executor


def _known() -> str:
    return ", ".join(repr(name) for name in sorted(ENGINES))
