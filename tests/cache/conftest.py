"""Every cache test runs on both builds of the entries: the C ``LRUMap`` and the
pure-Python ``OrderedDict`` paths (what an install without a C compiler runs)."""

from __future__ import annotations

import pytest

from distsys.cache import _core


@pytest.fixture(autouse=True, params=["c", "python"])
def entries_build(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Build the caches of this test on ``request.param``'s entries."""
    if request.param == "c":
        if _core.NATIVE is None:
            pytest.skip("the C extension distsys.cache._clru is not built")
    else:
        monkeypatch.setattr(_core, "NATIVE", None)
    return str(request.param)
