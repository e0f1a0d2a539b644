"""The single-batch path (`place.decide_one`, the ledger's kept-current views) against the vectorized `decide` and
the ledger's own dictionaries: the same decisions field for field, on many random batches and ledger states."""

from __future__ import annotations

import dataclasses
import enum
import math

import numpy as np
import pytest

from scheduler import synth
from scheduler.engine.core import Engine
from scheduler.engine.ledger import Ledger
from scheduler.engine.place import Decision, decide, decide_one
from scheduler.engine.request import Batch, Reason
from scheduler.model.loader import load_topology
from scheduler.paths import DEFAULT_TOPOLOGY
from engine_fixtures import TINY, shrink

DEFAULT = load_topology(DEFAULT_TOPOLOGY).value


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def assert_same(a, b, where: str = "decision") -> None:
    """Equal field for field, of the same types (floats compared by repr: nan equals nan, -0.0 differs from 0.0)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: {len(a)} != {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert repr(a) == repr(b), f"{where}: {a!r} != {b!r}"
    elif isinstance(a, enum.Enum):
        assert a is b, f"{where}: {a!r} != {b!r}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def ledger_reference(led: Ledger, keys: list[str]) -> tuple[list[float], list[float]]:
    """What the ledger holds and the lowest live ceiling per key, read from its dictionaries and heaps."""
    return [led._used.get(k, 0.0) for k in keys], [led._ceiling(k) for k in keys]


def mixed_batches(topology, n: int, seed: int) -> list[Batch]:
    """Realistic batches and awkward ones: tight TTFT / end-to-end SLOs, restricted data classes, prompt-only and
    answer-only batches, big ones that fill pools and cables."""
    rng = np.random.default_rng(seed)
    regions = [r.id for r in topology.regions]
    models = [m.id for m in topology.models]
    classes = [d.id for d in topology.data_classes]
    out = synth.random_batches(topology, n // 2, seed=seed)
    for i in range(n - len(out)):
        kind = rng.integers(6)
        inp, outp = int(rng.integers(0, 8000)), int(rng.integers(0, 2000))
        if inp + outp == 0:
            outp = 1
        if kind == 4:
            inp = 0 if rng.random() < 0.5 else inp
            outp = 0 if inp and rng.random() < 0.5 else max(outp, 1)
        ttft = [None, float(rng.uniform(20, 400)), float(rng.uniform(100, 3000)), 150][int(rng.integers(4))]
        e2e = [None, float(rng.uniform(500, 20000)), None][int(rng.integers(3))]
        out.append(Batch(
            regions[rng.integers(len(regions))], models[rng.integers(len(models))], inp, outp,
            int(rng.integers(1, 300 if kind == 5 else 30)), ttft, e2e, classes[rng.integers(len(classes))],
            id=f"m{i}", percentile=[None, 50.0, 90.0, 99.0, 99.9][int(rng.integers(5))]))
    return out


def compare_on(eng: Engine, batches: list[Batch], seed: int, hours=(3, 14, 20), releases: bool = True,
               clock: Clock | None = None) -> dict:
    """Place every batch (reserving, so the ledger fills and ceilings bind), checking before each that the single
    path decides what the vectorized one does at several hours; now and then release or let time pass."""
    rng = np.random.default_rng(seed)
    cat = eng.catalog
    keys = cat.ledger_keys
    n_pools = len(cat.pools)
    seen: dict = {"placed": 0, "reasons": set(), "rejections": set()}
    held: list[int] = []
    for b in batches:
        slo = eng.check(b, cat)
        used, ceiling = eng.ledger.state(keys)
        ref_used, ref_ceiling = ledger_reference(eng.ledger, keys)
        assert_same(used, ref_used, "used")
        assert_same(ceiling, ref_ceiling, "ceiling")
        assert_same(eng.usage(cat)[0].tolist(), ref_used[:n_pools], "usage")
        assert_same(eng.ceilings(cat).tolist(), ref_ceiling[:n_pools], "ceilings")
        tables = cat.one_batch(b.model)
        assert tables is not None
        for h in hours:
            want, _ = decide(b, slo, cat, h, np.array(used[:n_pools]), np.array(used[n_pools:]),
                             np.array(ceiling[:n_pools]))
            got = decide_one(b, slo, cat, tables, h, used, used[n_pools:], ceiling)
            assert_same(got, want)
            seen["reasons"].add(want.reason)
            seen["rejections"].update(r.reason for r in want.rejections)
        d = eng.place(b, hour=int(rng.choice(hours)))
        if d.placed:
            seen["placed"] += 1
            held.extend(d.reservation_ids)
        if releases and held and rng.random() < 0.15:
            k = int(rng.integers(len(held)))
            eng.release([held.pop(k)])
        if clock is not None and rng.random() < 0.1:
            clock.now += float(rng.uniform(0, 20))
    return seen


def test_default_topology_many_batches_reserving():
    clock = Clock()
    eng = Engine.from_topology(DEFAULT, "x", ledger=Ledger(clock))
    seen = compare_on(eng, mixed_batches(DEFAULT, 600, seed=1), seed=2, clock=clock)
    assert seen["placed"] > 100
    assert {Reason.TTFT, Reason.E2E, Reason.OK} <= seen["reasons"]
    assert {Reason.DATA_CLASS, Reason.TTFT, Reason.E2E} <= seen["rejections"]


def test_full_pools_and_cables_with_ceilings_binding():
    """Small pools and thin cables: capacity and cable rejections, ceilings of live placements binding, and
    placements whose own load pushes a pool past their SLO."""
    seen: set = set()
    for counts, gbps, seed in ((2, 0.05, 3), (6, 0.0005, 4)):
        topo = shrink(DEFAULT, counts={s.id: counts for s in DEFAULT.sites},
                      cable_gbps={c.id: gbps for c in DEFAULT.cables})
        clock = Clock()
        eng = Engine.from_topology(topo, "x", ledger=Ledger(clock))
        got = compare_on(eng, mixed_batches(topo, 400, seed=seed), seed=seed, clock=clock)
        seen |= got["rejections"] | got["reasons"]
        assert any(c < math.inf for c in eng.ledger.state(eng.catalog.ledger_keys)[1])
    assert {Reason.CAPACITY, Reason.CABLE} <= seen


def test_down_sites_cut_cables_and_data_classes():
    topo = shrink(TINY, down=("shaoguan",))
    eng = Engine.from_topology(topo, "test")
    cat = eng.catalog
    seen = compare_on(eng, mixed_batches(topo, 200, seed=5), seed=6)
    assert Reason.SITE_DOWN in seen["rejections"]
    # Cut every cable: some regions can reach nothing.
    eng.set_links(list(cat.cables), up=False)
    seen = compare_on(eng, mixed_batches(topo, 200, seed=7), seed=8)
    assert Reason.UNREACHABLE in seen["rejections"] | seen["reasons"]
    assert eng.catalog is not cat and eng.catalog.one_batch(TINY.models[0].id) is not cat.one_batch(TINY.models[0].id)


def test_sites_not_serving_a_model():
    """Sites whose pools serve only the other model (NOT_SERVED rejections), and a model served by few sites."""
    from scheduler.model.schema import Topology
    data = DEFAULT.model_dump(mode="json")
    first, second = DEFAULT.models[0].id, DEFAULT.models[1].id
    for i, site in enumerate(data["sites"]):
        for pool in site["pools"]:
            pool["models"] = [first] if i % 3 else [second]
    topo = Topology.model_validate(data)
    eng = Engine.from_topology(topo, "x")
    seen = compare_on(eng, mixed_batches(topo, 300, seed=15), seed=16)
    assert Reason.NOT_SERVED in seen["rejections"]


def test_tiny_topology_capacity_exhausted_and_unplaced_messages():
    topo = shrink(TINY, counts={"zhongwei": 4, "shaoguan": 4, "shantou": 4})
    eng = Engine.from_topology(topo, "test")
    seen = compare_on(eng, mixed_batches(topo, 300, seed=9), seed=10, releases=False)
    assert Reason.CAPACITY in seen["reasons"]


def test_engine_place_matches_the_vectorized_engine_reservations_and_ledger():
    """Two engines on the same batches, one forced onto the vectorized path: the same decisions (reservation ids
    included) and the same ledger at the end."""
    topo = shrink(DEFAULT, counts={s.id: 3 for s in DEFAULT.sites}, cable_gbps={c.id: 0.1 for c in DEFAULT.cables})
    fast, slow = (Engine.from_topology(topo, "x", ledger=Ledger(Clock())) for _ in range(2))
    slow.catalog.one_batch = lambda model: None  # the vectorized path only
    for b in mixed_batches(topo, 400, seed=11):
        for reserve in (False, True):
            assert_same(fast.place(b, hour=9, reserve=reserve), slow.place(b, hour=9, reserve=reserve))
    assert fast.ledger.reservations() == slow.ledger.reservations()
    assert fast.ledger.snapshot() == slow.ledger.snapshot()


def test_ledger_views_follow_every_change():
    """The kept-current views equal the dictionaries after reservations with and without ceilings, bulk ones,
    releases, expiry, compaction and clear, for several key lists at once (more than the ledger keeps)."""
    clock = Clock()
    led = Ledger(clock)
    rng = np.random.default_rng(12)
    keys = [f"p{i}" for i in range(12)]
    lists = [keys, keys[:5], keys[3:], list(reversed(keys)), keys[::2], keys[1::3]]
    capacity = dict.fromkeys(keys, 40.0)
    ids: list[int] = []
    for step in range(3000):
        op = rng.random()
        if op < 0.45:
            items = [(keys[int(rng.integers(12))], float(rng.uniform(0, 3)), float(rng.uniform(0.5, 30)))
                     + ((float(rng.uniform(5, 45)),) if rng.random() < 0.6 else ()) for _ in range(rng.integers(1, 4))]
            got = led.try_reserve(items, capacity)
            ids.extend(r.id for r in got or ())
        elif op < 0.55:
            n = int(rng.integers(0, 6))
            first = led.reserve_many(keys, rng.integers(0, 12, n), rng.uniform(0, 2, n), rng.uniform(0.5, 30, n),
                                     np.where(rng.random(n) < 0.5, rng.uniform(5, 45, n), np.inf),
                                     np.full(12, 40.0))
            if first is not None:
                ids.extend(range(first, first + n))
        elif op < 0.75 and ids:
            led.release_many([ids.pop(int(rng.integers(len(ids)))) for _ in range(min(len(ids), 2))])
        elif op < 0.97:
            clock.now += float(rng.uniform(0, 3))
        else:
            led.clear()
        pick = lists[int(rng.integers(len(lists)))]
        used, ceiling = led.state(pick)
        assert_same((used, ceiling), ledger_reference(led, pick), f"step {step}")
        assert_same(led.used(pick).tolist(), used)
        assert_same(led.ceilings(pick).tolist(), ceiling)
    assert any(led.ceilings(keys) < np.inf) or not led.reservations()


def test_a_model_no_pool_serves_takes_the_vectorized_path():
    from scheduler.model.schema import Topology
    data = DEFAULT.model_dump(mode="json")
    first, second = DEFAULT.models[0].id, DEFAULT.models[1].id
    for site in data["sites"]:
        for pool in site["pools"]:
            pool["models"] = [first]
    eng = Engine.from_topology(Topology.model_validate(data), "x")
    cat = eng.catalog
    assert cat.one_batch(second) is None and cat.one_batch(first) is cat.one_batch(first) is not None
    b = Batch(DEFAULT.regions[0].id, second, 100, 100)
    d = eng.place(b, hour=5)
    assert not d.placed and d.reason is Reason.NOT_SERVED
    assert_same(d, decide(b, eng.check(b), cat, 5, *eng.usage(cat), eng.ceilings(cat))[0])


@pytest.mark.parametrize("seed", [13, 14])
def test_decision_objects_are_plain_decisions(seed):
    eng = Engine.from_topology(DEFAULT, "x")
    for b in mixed_batches(DEFAULT, 20, seed=seed):
        d = eng.place(b, hour=1)
        assert type(d) is Decision and d == dataclasses.replace(d)
        assert list(vars(d)) == [f.name for f in dataclasses.fields(Decision)]


def test_concurrent_placements_keep_the_views_exact_and_pools_within_capacity():
    import threading
    topo = shrink(DEFAULT, counts={s.id: 3 for s in DEFAULT.sites})
    eng = Engine.from_topology(topo, "x", ledger=Ledger(Clock()))
    cat = eng.catalog
    batches = mixed_batches(topo, 400, seed=17)
    errors: list[BaseException] = []

    def work(part: list[Batch]) -> None:
        try:
            for b in part:
                d = eng.place(b, hour=14)
                if d.placed and d.load > 1.0:
                    eng.release(d.reservation_ids[:1])
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=work, args=(batches[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    used, ceiling = eng.ledger.state(cat.ledger_keys)
    assert_same((used, ceiling), ledger_reference(eng.ledger, cat.ledger_keys))
    n = len(cat.pools)
    assert all(u <= min(c, k) + 1e-9 for u, c, k in zip(used[:n], cat.pool_capacity.tolist(), ceiling[:n]))
