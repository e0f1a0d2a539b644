"""The synthetic topology generator: valid, seeded, realistic in the ways the benchmark relies on."""

from __future__ import annotations

import pytest

from scheduler import synth
from scheduler.engine.core import Engine
from scheduler.model.schema import Status, Topology
from scheduler.network import NetworkModel


@pytest.fixture(scope="module")
def large() -> Topology:
    return synth.generate()


def test_default_size_and_shape(large):
    assert len(large.sites) == 200 and len(large.regions) == 50
    assert len({s.id for s in large.sites}) == 200 and len({r.id for r in large.regions}) == 50
    provinces = {s.province for s in large.sites}
    assert len(provinces) >= 15
    assert all(18 <= s.lat <= 48 and 80 <= s.lon <= 125 for s in large.sites)  # in China
    assert all(-11 <= r.lat <= 25 and 92 <= r.lon <= 130 for r in large.regions)  # in Southeast Asia
    assert 3 <= sum("offshore-pilot" in s.tags for s in large.sites) <= 12
    assert {n.kind.value for n in large.nodes} == {"pop", "landing"}
    assert sum(len(c.segments) >= 3 for c in large.cables) >= 5
    assert any(t.bands for t in large.tariffs) and len({t.cny_per_kwh for t in large.tariffs}) > 5
    assert all(s.pools and all(p.count % 8 == 0 for p in s.pools) for s in large.sites)


def test_every_region_reaches_sites_over_more_than_one_cable(large):
    net = NetworkModel(large)
    for region in large.regions:
        reached = [s.id for s in large.sites if net.route(region.id, s.id)]
        assert len(reached) == 200, region.id
    cables_used = {c for route in net.routes.values() for c in route.cables}
    assert len(cables_used) >= 4


def test_same_seed_same_topology_and_seeds_differ():
    a, b, c = synth.generate(30, 8, seed=1), synth.generate(30, 8, seed=1), synth.generate(30, 8, seed=2)
    assert a.model_dump() == b.model_dump() and a.model_dump() != c.model_dump()


@pytest.mark.parametrize("sites,regions,cables", [(1, 1, None), (4, 2, 2), (12, 45, 0), (3, 60, 1)])
def test_small_and_odd_sizes_are_valid_and_serve(sites, regions, cables):
    topo = synth.generate(sites, regions, seed=sites, cables=cables)
    assert len(topo.sites) == sites and len(topo.regions) == regions
    assert len(topo.cables) == (len(synth.CABLES) if cables is None else cables)
    assert any("offshore-pilot" in s.tags for s in topo.sites)
    assert all(s.status is Status.up for s in topo.sites)
    eng = Engine.from_topology(topo)
    batches = synth.random_batches(topo, 20, seed=sites)
    assert all(eng.check(b) for b in batches)
    assert eng.place_many(batches, hour=12, reserve=False).placed > 0


def test_batches_are_seeded_and_realistic(large):
    a, b = synth.random_batches(large, 2000, seed=3), synth.random_batches(large, 2000, seed=3)
    assert a == b and a != synth.random_batches(large, 2000, seed=4)
    inputs = sorted(x.input_tokens for x in a)
    assert 600 < inputs[1000] < 2500 and max(inputs) <= 16000 and min(x.output_tokens for x in a) >= 1
    assert 0.85 < sum(x.data_class == "public" for x in a) / 2000 < 0.97
    long = [x for x in a if x.input_tokens > synth.LONG_CONTEXT]
    assert long and all(x.ttft_ms and x.ttft_ms >= synth.LONG_CONTEXT_MS_PER_TOKEN * x.input_tokens for x in long)
    assert len({x.region for x in a}) == 50
