"""Shared fixtures: the shipped topologies, loaded once per session."""

from __future__ import annotations

import pytest

from scheduler.model.loader import Loaded, load_topology
from scheduler.paths import DEFAULT_TOPOLOGY, TOPOLOGY_DIR

TINY = TOPOLOGY_DIR / "tiny.yaml"


@pytest.fixture(scope="session")
def tiny() -> Loaded:
    return load_topology(TINY)


@pytest.fixture(scope="session")
def china_sea() -> Loaded:
    return load_topology(DEFAULT_TOPOLOGY)
