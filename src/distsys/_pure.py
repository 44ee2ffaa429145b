"""``DISTSYS_PURE_PYTHON=1``: run the plain Python modules where compiled ones are installed.

A build of distsys compiles a few hot modules to C (with mypyc; the list is in
``_compiled.txt``) and builds the LRU cache's C entries. Each compiled module is the
same source as its ``.py`` file beside it; with this variable set before distsys is
imported, the ``.py`` files are imported instead and the cache runs its pure-Python
paths — to debug or profile them line by line, or to test the fallback build.
"""

from __future__ import annotations

import ast
import importlib.abc
import importlib.util
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Final

__all__ = ["ENV", "compiled_names", "install", "requested", "restore_docstrings"]

ENV: Final = "DISTSYS_PURE_PYTHON"
_C_ONLY: Final = frozenset({"distsys.cache._clru"})  # no Python source: refused


def requested() -> bool:
    """Whether the environment asks for the pure-Python modules."""
    return os.environ.get(ENV, "0") not in ("", "0")


def compiled_names() -> frozenset[str]:
    """The modules a build compiles (from ``_compiled.txt``), as dotted names."""
    text = (Path(__file__).with_name("_compiled.txt")).read_text(encoding="utf-8")
    paths = (line.strip() for line in text.splitlines())
    return frozenset(
        path.removesuffix(".py").replace("/", ".")
        for path in paths
        if path and not path.startswith("#")
    )


class _PureFinder(importlib.abc.MetaPathFinder):
    """Finds the ``.py`` source of a compiled module ahead of its extension module."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname in _C_ONLY:
            raise ImportError(f"{fullname} is not used: {ENV} is set", name=fullname)
        if fullname not in self.names:
            return None
        leaf = fullname.rpartition(".")[2] + ".py"
        for entry in path or ():
            source = os.path.join(entry, leaf)
            if os.path.isfile(source):
                return importlib.util.spec_from_file_location(fullname, source)
        return None


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, _PureFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PureFinder(compiled_names()))


def restore_docstrings(*modules: ModuleType) -> None:
    """Give compiled modules and their classes back the docstrings of their source.

    mypyc drops them (a compiled class's ``__doc__`` is empty); ``help()`` and
    ``inspect.getdoc`` read them. A module running from its ``.py`` file is left as it is.
    Methods keep theirs only in the source: a compiled method's ``__doc__`` is read-only.
    """
    for module in modules:
        origin = getattr(module, "__file__", None) or ""
        if origin.endswith(".py"):
            continue
        source = Path(origin).parent / (module.__name__.rpartition(".")[2] + ".py")
        try:
            tree = ast.parse(source.read_text(encoding="utf-8"))
        except (OSError, SyntaxError):
            continue  # no source beside it: nothing to restore from
        module.__doc__ = ast.get_docstring(tree, clean=False)
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                cls = getattr(module, node.name, None)
                doc = ast.get_docstring(node, clean=False)
                if isinstance(cls, type) and doc and not cls.__doc__:
                    cls.__doc__ = doc
