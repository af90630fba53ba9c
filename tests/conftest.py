"""Shared fixtures for the whole suite.

Every test runs with the cachekit environment variables removed (so a developer's
CACHEKIT_REDIS_URL or the machine's REDIS_URL never leaks in), and with the plugin
registry rebuilt when a test changed what is installed or the environment.
"""

from __future__ import annotations

import os
import sys

import pytest

from cachekit import plugins

# tests/support (redis_servers, faults) and tests/ (redis_fixtures) importable from every test.
_TESTS = os.path.dirname(os.path.abspath(__file__))
for _path in (os.path.join(_TESTS, "support"), _TESTS):
    if _path not in sys.path:
        sys.path.insert(0, _path)

# Real redis-server processes and fault injectors: see tests/redis_fixtures.py.
pytest_plugins = ["redis_fixtures"]

_VARIABLES = [name for name in os.environ if name.startswith("CACHEKIT_")] + ["REDIS_URL"]


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch):
    for name in list(os.environ):
        if name.startswith("CACHEKIT_") or name == "REDIS_URL":
            monkeypatch.delenv(name, raising=False)
    plugins.reset_registry()
    yield
    plugins.reset_registry()
