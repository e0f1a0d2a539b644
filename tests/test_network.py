"""The network model: latency from fiber length, routes and cables, cuts and repairs."""

from __future__ import annotations

import math

import pytest

from scheduler.network import NetworkModel

# ../shared/reference/china-sea-network.md §3, measured RTT ranges (ms), as node ids of the default topology.
MEASURED_RTT = {
    ("hongkong", "singapore"): (32, 38),
    ("hongkong", "manila"): (18, 25),
    ("hongkong", "bangkok"): (40, 50),
    ("hongkong", "ho-chi-minh-city"): (25, 35),
    ("hongkong", "kuala-lumpur"): (38, 45),
    ("hongkong", "jakarta"): (45, 55),
    ("guangzhou", "singapore"): (38, 50),
    ("shanghai", "singapore"): (60, 75),
    ("beijing", "guangzhou"): (30, 40),
    ("guian", "guangzhou"): (12, 20),
    ("zhongwei", "guangzhou"): (35, 45),
    ("horinger", "beijing"): (8, 12),
}


@pytest.mark.parametrize("pair", sorted(MEASURED_RTT), ids="-".join)
def test_default_topology_rtt_within_25_percent_of_measured(china_sea, pair):
    low, high = MEASURED_RTT[pair]
    measured = (low + high) / 2
    rtt = NetworkModel(china_sea.value).rtt_ms(*pair)
    assert abs(rtt - measured) <= 0.25 * measured, f"{pair}: model {rtt:.1f} ms vs measured {low}-{high} ms"


def test_latency_is_length_times_fiber_unless_measured(tiny):
    net = NetworkModel(tiny.value)
    edge = net.edges["shaoguan~guangzhou"]
    assert edge.one_way_ms == pytest.approx(300 * 0.005)
    assert net.edges["cable-a#0"].cable == "cable-a"


def test_route_carries_path_cables_and_rtt(tiny):
    net = NetworkModel(tiny.value)
    route = net.route("singapore", "shaoguan")
    assert route.nodes == ("singapore", "tuas", "hongkong", "guangzhou", "shaoguan")
    assert route.cables == ("cable-b",)
    assert route.rtt_ms == pytest.approx(2 * 0.005 * (30 + 3300 + 180 + 300))
    assert net.rtt_ms("singapore", "shaoguan") == pytest.approx(route.rtt_ms)


def test_cutting_a_cable_moves_the_route_and_repair_restores_it(tiny):
    net = NetworkModel(tiny.value)
    before = net.route("manila", "shantou")
    assert before.cables == ("cable-a",)
    cut = net.with_status(["cable-a"], up=False)
    after = cut.route("manila", "shantou")
    assert "cable-a" not in after.cables and after.cables == ("cable-b",)
    assert after.rtt_ms > before.rtt_ms
    assert cut.down_cables() == {"cable-a"}
    assert net.route("manila", "shantou") == before  # the original model is untouched
    repaired = cut.with_status(["cable-a"], up=True)
    assert repaired.route("manila", "shantou") == before


def test_default_topology_busiest_cable_cut_reroutes_every_region(china_sea):
    net = NetworkModel(china_sea.value)
    used = {}
    for route in net.routes.values():
        for cable in route.cables:
            used[cable] = used.get(cable, 0) + 1
    busiest = max(used, key=used.get)
    cut = net.with_status([busiest], up=False)
    for (region, site), route in net.routes.items():
        if busiest in route.cables:
            after = cut.route(region, site)
            assert after is not None, f"{region}->{site} lost all routes when {busiest} was cut"
            assert busiest not in after.cables
            assert after.rtt_ms >= route.rtt_ms
    assert net.with_status([busiest], up=False).with_status([busiest], up=True).routes == net.routes


def test_cutting_everything_leaves_the_region_unreachable(tiny):
    net = NetworkModel(tiny.value).with_status(["cable-a", "cable-b"], up=False)
    assert net.route("singapore", "shantou") is None
    assert math.isinf(net.rtt_ms("singapore", "shantou"))
    assert net.alternatives("singapore", "shantou") == []


def test_k_alternative_paths_are_distinct_and_ordered(tiny):
    routes = NetworkModel(tiny.value).alternatives("manila", "shantou", k=3)
    assert len(routes) == 3
    assert len({r.nodes for r in routes}) == 3
    assert [r.rtt_ms for r in routes] == sorted(r.rtt_ms for r in routes)
    assert routes[0] == NetworkModel(tiny.value).route("manila", "shantou")


def test_unknown_cable_is_refused(tiny):
    with pytest.raises(KeyError, match="unknown cable or link 'nope'"):
        NetworkModel(tiny.value).with_status(["nope"], up=False)


def test_a_single_link_can_be_cut_by_id(tiny):
    net = NetworkModel(tiny.value).with_status(["shaoguan~guangzhou"], up=False)
    assert net.route("singapore", "shaoguan") is None
    assert net.route("singapore", "shantou") is not None
