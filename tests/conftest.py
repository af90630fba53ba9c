"""Shared fixtures for the whole suite.

Every test runs with the cachekit environment variables removed (so a developer's
CACHEKIT_REDIS_URL or the machine's REDIS_URL never leaks in), and with the plugin
registry rebuilt when a test changed what is installed or the environment.
"""

from __future__ import annotations

import os

import pytest

from cachekit import plugins

_VARIABLES = [name for name in os.environ if name.startswith("CACHEKIT_")] + ["REDIS_URL"]


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch):
    for name in list(os.environ):
        if name.startswith("CACHEKIT_") or name == "REDIS_URL":
            monkeypatch.delenv(name, raising=False)
    plugins.reset_registry()
    yield
    plugins.reset_registry()
