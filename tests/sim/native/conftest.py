"""Fixtures of the native (g++) tests: the compiler, skipped when absent, and one binary cache per session."""

import pytest

from nn2aie.errors import MissingToolError


@pytest.fixture(scope="session")
def cxx() -> str:
    from nn2aie.sim.native import find_compiler

    try:
        return find_compiler()
    except MissingToolError as exc:
        pytest.skip(f"no C++ compiler: {exc}")


@pytest.fixture(scope="session")
def native_cache(tmp_path_factory, cxx):
    """Compiled kernel binaries, shared by all tests of the session (each distinct source compiles once)."""
    return tmp_path_factory.mktemp("native-cache")
