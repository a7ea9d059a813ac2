"""Suite-wide fixtures.

A developer's own LINLI_* settings (a real secret, another store path, another port) must never
leak into the tests: every test starts with none of them. LINLI_CHROMIUM (where the browser is)
is the one kept, since it describes the machine, not Linli's configuration.
"""
from __future__ import annotations

import os

import pytest

KEEP = {"LINLI_CHROMIUM"}


def pytest_configure(config):
    # at collection time too: modules that load config.toml at import see a clean environment
    for key in [k for k in os.environ if k.startswith("LINLI_") and k not in KEEP]:
        del os.environ[key]


@pytest.fixture(autouse=True)
def _no_linli_environment(monkeypatch):
    for key in [k for k in os.environ if k.startswith("LINLI_") and k not in KEEP]:
        monkeypatch.delenv(key)
    yield
