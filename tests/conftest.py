"""Shared test fixtures: a fresh plugin set per test and quiet progress bars."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_plugins(monkeypatch):
    """Each test sees the plugin environment it sets up, not one cached by an earlier test."""
    from facebench.pluginmanager import reset_plugins

    monkeypatch.setenv("FACEBENCH_QUIET", "1")
    monkeypatch.delenv("FACEBENCH_PLUGINS", raising=False)
    monkeypatch.delenv("FACEBENCH_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("FACEBENCH_DEBUG", raising=False)
    reset_plugins()
    yield
    reset_plugins()
