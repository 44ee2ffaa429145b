"""Build: the optional C extension of the LRU cache, and the modules mypyc compiles.

Both are optional: without a C compiler the install goes on in pure Python.
``_clru.c`` is skipped alone when it does not compile (``distsys.cache`` then runs the
same algorithm in Python). The modules listed in ``src/distsys/_compiled.txt`` are
compiled with mypyc — when it is importable at build time (``pyproject.toml`` asks for
it) and ``DISTSYS_PURE_PYTHON`` is unset or ``0`` — all of them or none: if one fails
to build, the others are dropped too and every one installs as the Python module it is.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
CACHE_EXTENSION = "distsys.cache._clru"


def _pure() -> ModuleType:
    """``distsys._pure`` (the list of compiled modules, DISTSYS_PURE_PYTHON), loaded by
    path: importing the package would need its dependencies in the build environment."""
    spec = importlib.util.spec_from_file_location("_distsys_pure", SRC / "distsys" / "_pure.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compiled_modules(pure: ModuleType) -> list[str]:
    """The modules to compile, as paths relative to ``src``."""
    return sorted(name.replace(".", "/") + ".py" for name in pure.compiled_names())


def mypyc_extensions() -> list[Extension]:
    pure = _pure()
    if pure.requested():
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("distsys: mypyc is not installed: pure-Python build", file=sys.stderr)
        return []
    # The build's own mypy settings, not the project's (strict checking is `make
    # typecheck`'s): a package missing from the build environment is then typed Any.
    config = HERE / "build" / "mypyc.ini"
    config.parent.mkdir(exist_ok=True)
    config.write_text("[mypy]\nignore_missing_imports = True\n", encoding="utf-8")
    cwd = os.getcwd()
    # Module names follow the paths: distsys/gateway/_fast.py is distsys.gateway._fast.
    os.chdir(SRC)
    try:
        return list(
            mypycify(
                ["--config-file", str(config), *compiled_modules(pure)],
                opt_level="3",
                target_dir=str(HERE / "build" / "mypyc"),
                group_name="distsys_native",
            )
        )
    finally:
        os.chdir(cwd)


class BuildAllOrNone(build_ext):
    """Build the extensions; if a mypyc one fails, build the others without any of them."""

    def build_extensions(self) -> None:
        compiled = [ext for ext in self.extensions if ext.name != CACHE_EXTENSION]
        try:
            super().build_extensions()
        except (CCompilerError, ExecError, PlatformError, OSError) as exc:
            if not compiled:
                raise
            print(f"distsys: the compiled modules did not build ({exc}): pure-Python build",
                  file=sys.stderr)  # fmt: skip
            for ext in compiled:
                Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
            self.extensions = [ext for ext in self.extensions if ext not in compiled]
            super().build_extensions()


setup(
    ext_modules=[
        Extension(CACHE_EXTENSION, ["src/distsys/cache/_clru.c"], optional=True),
        *mypyc_extensions(),
    ],
    cmdclass={"build_ext": BuildAllOrNone},
)
