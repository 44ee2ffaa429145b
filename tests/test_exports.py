"""The public API: every subpackage's __all__ is complete, and imports stay light."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
import types

import pytest

import distsys

OPTIONAL = ("redis", "nats", "aetcd", "dask", "distributed", "pyspark", "pyarrow", "numpy")
HEAVY = ("click", "rich")


def public_packages() -> list[str]:
    names = ["distsys", "distsys.errors", "distsys.clock"]
    for info in pkgutil.iter_modules(distsys.__path__, "distsys."):
        if info.ispkg and not info.name.split(".")[-1].startswith("_"):
            names.append(info.name)
    return sorted(set(names))


@pytest.mark.parametrize("name", public_packages())
def test_all_lists_exactly_the_public_names(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert len(exported) == len(set(exported)), f"{name}.__all__ has duplicates"
    for attr in exported:
        assert hasattr(module, attr), f"{name}.__all__ names {attr!r}, which does not exist"
    for attr, value in vars(module).items():
        if attr.startswith("_") or isinstance(value, types.ModuleType):
            continue
        defined_here = getattr(value, "__module__", "") or ""
        if (inspect.isclass(value) or inspect.isfunction(value)) and defined_here.startswith(
            "distsys"
        ):
            assert attr in exported, f"{name}.{attr} is public but missing from __all__"


@pytest.mark.parametrize("name", public_packages())
def test_every_public_name_has_a_docstring(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__, f"{name} has no module docstring"
    for attr in module.__all__:
        value = getattr(module, attr)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{name}.{attr} has no docstring"


def test_importing_the_library_pulls_in_no_optional_or_heavy_dependency() -> None:
    libraries = [n for n in public_packages() if n != "distsys.cli"]
    code = (
        "import sys\n"
        + "".join(f"import {n}\n" for n in libraries)
        + "print('\\n'.join(sorted(sys.modules)))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout.split()
    )
    for dependency in OPTIONAL + HEAVY:
        assert dependency not in loaded, f"importing distsys loads {dependency}"
