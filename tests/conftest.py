"""Shared fixtures: the shipped topologies, loaded once per session, and the engine tests' shared helpers.

The helpers themselves (small topologies, seeded instances, exhaustive search, independent re-checks of
placements) are tests/engine_fixtures.py, a plain module so that benchmarks import them too; the exact reference
models are tests/batch_oracle.py (the batch problem) and tests/fleet_oracle.py (the fleet plan).
"""

from __future__ import annotations

import pytest

import engine_fixtures

from scheduler.model.loader import Loaded, load_topology
from scheduler.paths import DEFAULT_TOPOLOGY, TOPOLOGY_DIR
from scheduler.service.security import TokenStore, hash_token

TINY = TOPOLOGY_DIR / "tiny.yaml"


@pytest.fixture(scope="session")
def tiny() -> Loaded:
    return load_topology(TINY)


@pytest.fixture(scope="session")
def china_sea() -> Loaded:
    return load_topology(DEFAULT_TOPOLOGY)


@pytest.fixture(scope="session")
def small_instances() -> list:
    """Seeded instances of the batch problem small enough for exhaustive search (engine_fixtures.small_instances)."""
    return engine_fixtures.small_instances()


def token_store(path, **tokens: tuple[str, str]) -> TokenStore:
    """A tokens file at `path` with one entry per name (name=(role, secret)), loaded as the server loads it."""
    path.write_text("tokens:\n" + "".join(f"  - {{name: {name}, role: {role}, sha256: {hash_token(secret)}}}\n"
                                         for name, (role, secret) in tokens.items()))
    return TokenStore.load(path)


@pytest.fixture()
def etcd():
    """A real etcd on free loopback ports with a temporary data dir, stopped after the test."""
    from etcd_server import EtcdServer

    with EtcdServer() as server:
        yield server
