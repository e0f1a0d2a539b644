"""Safe operator actions, against a real control plane on loopback serving the default topology: SetLinkStatus
refuses to bring up what the topology marks as planned (not built), so no traffic routes over it, while built links
are cut and repaired as before; every operator action is logged with the name of the token that made it."""

from __future__ import annotations

import logging

import grpc
import pytest

from scheduler.engine.core import Engine
from scheduler.engine.ledger import Ledger
from scheduler.engine.request import Batch
from scheduler.model.schema import Status
from scheduler.paths import DEFAULT_TOPOLOGY, TOPOLOGY_DIR
from scheduler.service.client import Client, error_field
from scheduler.service.operator import NO_TOKENS, unbuilt
from scheduler.service.security import hash_token
from scheduler.service.server import ControlPlane
from scheduler.v1 import types_pb2
from conftest import token_store

OPERATOR_TOKEN, ROUTER_TOKEN = "safety-operator-token", "safety-router-token"
PLANNED = "sea-h2x"  # planned in topology/china-sea.yaml: under construction, for what-if scenarios
SOUTH = ("singapore", "jakarta", "kuala-lumpur")  # the regions it would carry if it were switched on


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    root = tmp_path_factory.mktemp("operator-safety")
    tokens = token_store(root / "tokens.yaml", **{"ops-oncall": ("operator", OPERATOR_TOKEN),
                                                  "router-sg-1": ("router", ROUTER_TOKEN)})
    topo = root / "china-sea.yaml"
    topo.write_text(DEFAULT_TOPOLOGY.read_text())
    with ControlPlane(topo, port=0, hour=lambda: 14, tokens=tokens, poll_interval_s=3600) as p:
        yield p


@pytest.fixture
def ops(plane):
    with Client(plane.target, timeout=20, token=OPERATOR_TOKEN) as c:
        yield c


def cables_used(c: Client) -> dict[tuple[str, str], tuple[str, ...]]:
    models = c.get_topology().topology.models
    return {(r, m): tuple(c.place(types_pb2.Batch(region=r, model=m, input_tokens=2000, output_tokens=500),
                                  dry_run=True).decision.route.cables)
            for r in SOUTH for m in models}


def test_the_default_topology_has_a_planned_cable_that_would_carry_southern_traffic(plane):
    cable = next(c for c in plane.engine.catalog.topology.cables if c.id == PLANNED)
    assert cable.status is Status.planned
    assert PLANNED in unbuilt(plane.engine.catalog) and f"{PLANNED}#0" in unbuilt(plane.engine.catalog)
    # Switched on (as a what-if engine may), it would be the route of every southern region: what the API refuses.
    what_if = Engine(plane.engine.catalog, ledger=Ledger(), hour=lambda: 14)
    what_if.set_links([PLANNED], True)
    for region in SOUTH:
        d = what_if.place(Batch(region, "llm-70b", 2000, 500), reserve=False)
        assert PLANNED in d.route.cables, region


@pytest.mark.parametrize("ids, at", [([PLANNED], 0), ([f"{PLANNED}#0"], 0), (["apcn-2", PLANNED], 1)])
def test_bringing_up_a_planned_cable_is_refused_and_nothing_routes_over_it(plane, ops, ids, at):
    before = cables_used(ops)
    with pytest.raises(grpc.RpcError) as info:
        ops.set_link_status(ids, up=True)
    e = info.value
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.details()
    assert e.details().startswith(f"ids[{at}]: cannot bring up {ids[at]!r}: ") and "planned" in e.details()
    assert error_field(e) == f"ids[{at}]"
    assert not any(up for _, up in plane.state.link_overrides())  # nothing changed, not even the built cable
    after = cables_used(ops)
    assert after == before
    assert not any(PLANNED in cables for cables in after.values()), after


def test_built_cables_are_still_cut_and_repaired_and_planned_ones_may_be_cut(plane, ops):
    cut = ops.set_link_status(["apcn-2"], up=False)
    assert "apcn-2" in cut.down_cables
    assert all("apcn-2" not in cables for cables in cables_used(ops).values())
    repaired = ops.set_link_status(["apcn-2"], up=True)
    assert "apcn-2" not in repaired.down_cables
    assert ops.set_link_status([PLANNED], up=False).down_cables  # harmless: it carries nothing anyway
    assert not any(PLANNED in cables for cables in cables_used(ops).values())


def test_every_operator_action_is_logged_with_its_token_name(plane, ops, caplog):
    caplog.set_level(logging.INFO, logger="scheduler.operator")
    ops.set_link_status(["apcn-2"], up=False)
    ops.set_link_status(["apcn-2"], up=True)
    with pytest.raises(grpc.RpcError):
        ops.set_link_status([PLANNED], up=True)
    with pytest.raises(grpc.RpcError):
        ops.set_link_status(["no-such-cable"], up=False)
    assert ops.reload_topology().result.ok
    records = [r for r in caplog.records if r.name == "scheduler.operator"]
    actions = [(getattr(r, "action", None), getattr(r, "principal", None)) for r in records]
    assert actions == [("cut", "ops-oncall"), ("repair", "ops-oncall"), ("repair", "ops-oncall"),
                       ("cut", "ops-oncall"), ("reload", "ops-oncall")], [r.getMessage() for r in records]
    assert all("ops-oncall" in r.getMessage() for r in records)
    assert "refused" in records[2].getMessage() and PLANNED in records[2].getMessage()
    assert records[2].levelno == records[4].levelno == logging.WARNING
    for secret in (OPERATOR_TOKEN, hash_token(OPERATOR_TOKEN)):
        assert not any(secret in f"{r.getMessage()} {r.__dict__}" for r in records)


def test_without_a_token_store_actions_are_logged_as_such(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="scheduler.operator")
    with ControlPlane(TOPOLOGY_DIR / "tiny.yaml", port=0, hour=lambda: 14, poll_interval_s=3600) as p, \
            Client(p.target, timeout=10) as c:
        c.set_link_status(["cable-a"], up=True)
        c.reload_topology()
    principals = [getattr(r, "principal", None) for r in caplog.records if r.name == "scheduler.operator"]
    assert principals == [NO_TOKENS, NO_TOKENS]


def test_a_stored_repair_of_a_planned_cable_is_not_carried_across_a_reload():
    """Overrides outlive reloads; one that brings up what the file marks as not built (stored before the check, or
    for a cable a later edit marked planned) is dropped, as SetLinkStatus would refuse it now."""
    from scheduler.model.loader import load_topology
    from scheduler.paths import DEFAULT_TOPOLOGY
    from scheduler.service.state import build_catalog

    loaded = load_topology(DEFAULT_TOPOLOGY)
    cat = build_catalog(loaded, {PLANNED: True, "apcn-2": False})
    routes = [cat.route(r.id, s.id) for r in cat.topology.regions for s in cat.topology.sites]
    assert all(PLANNED not in route.cables for route in routes if route)
    assert all("apcn-2" not in route.cables for route in routes if route)  # the cut is still carried
