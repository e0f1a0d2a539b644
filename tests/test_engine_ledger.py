"""The capacity ledger: expiry on an injected clock, release, all-or-nothing, ceilings, and concurrency."""

from __future__ import annotations

import random
import threading

import pytest

from scheduler.engine.ledger import Ledger
from scheduler.engine.request import Batch
from test_engine_support import TINY, engine, shrink


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_reservations_expire_when_their_hold_ends():
    clock = Clock()
    ledger = Ledger(clock)
    got = ledger.try_reserve([("a", 3.0, 10.0), ("a", 2.0, 20.0)], {"a": 8.0})
    assert [r.expires_at for r in got] == [1010.0, 1020.0]
    assert ledger.used(["a"])[0] == pytest.approx(5.0)
    clock.now = 1010.0
    assert ledger.used(["a"])[0] == pytest.approx(2.0)
    clock.now = 1020.5
    assert ledger.snapshot() == {} and ledger.used(["a", "b"]).tolist() == [0.0, 0.0]


def test_release_frees_once_and_expiry_after_release_changes_nothing():
    clock = Clock()
    ledger = Ledger(clock)
    r1, r2 = ledger.try_reserve([("a", 3.0, 10.0), ("a", 1.0, 10.0)], {"a": 8.0})
    assert ledger.release(r1.id) and not ledger.release(r1.id)
    assert ledger.used(["a"])[0] == pytest.approx(1.0)
    clock.now += 11
    assert ledger.used(["a"])[0] == 0.0 and not ledger.release(r2.id)


def test_all_or_nothing():
    ledger = Ledger(Clock())
    assert ledger.try_reserve([("a", 3.0, 10.0), ("b", 6.0, 10.0)], {"a": 8.0, "b": 5.0}) is None
    assert ledger.snapshot() == {}
    assert ledger.try_reserve([("a", 4.0, 10.0), ("a", 4.0, 10.0)], {"a": 8.0}) is not None
    assert ledger.try_reserve([("a", 0.01, 10.0)], {"a": 8.0}) is None


def test_a_ceiling_caps_the_pool_while_its_reservation_lives():
    clock = Clock()
    ledger = Ledger(clock)
    (tight,) = ledger.try_reserve([("a", 2.0, 10.0, 5.0)], {"a": 100.0})  # its SLO holds up to 5 accelerators
    assert ledger.ceilings(["a", "b"]).tolist() == [5.0, float("inf")]
    assert ledger.try_reserve([("a", 3.5, 30.0)], {"a": 100.0}) is None  # would take the pool to 5.5
    assert ledger.try_reserve([("a", 3.0, 30.0)], {"a": 100.0}) is not None
    # A new item's own ceiling counts too: 5 + 1 would exceed the 5.5 it tolerates.
    assert ledger.try_reserve([("a", 1.0, 30.0, 5.5)], {"a": 100.0}) is None
    ledger.release(tight.id)
    assert ledger.ceilings(["a"]).tolist() == [float("inf")]
    assert ledger.try_reserve([("a", 50.0, 30.0)], {"a": 100.0}) is not None
    clock.now += 31
    assert ledger.snapshot() == {}


def test_dead_ceiling_entries_are_compacted():
    ledger = Ledger(Clock())
    for i in range(3000):
        (r,) = ledger.try_reserve([("a", 1.0, 10.0, 50.0 + i)], {"a": 100.0})
        ledger.release(r.id)
    assert sum(map(len, ledger._ceilings.values())) <= 1024 + 2


def test_concurrent_reservations_never_overcommit():
    ledger = Ledger()
    capacity = {"a": 50.0, "b": 30.0}
    taken: list[tuple[str, float]] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(400):
            items = [(rng.choice("ab"), rng.uniform(0.1, 3.0), 60.0) for _ in range(rng.randint(1, 3))]
            got = ledger.try_reserve(items, capacity)
            if got:
                with lock:
                    taken.extend((r.pool, r.accelerators) for r in got)
                if rng.random() < 0.3:
                    for r in got:
                        ledger.release(r.id)
                    with lock:
                        for r in got:
                            taken.remove((r.pool, r.accelerators))
            snapshot = ledger.snapshot()
            assert all(snapshot[k] <= capacity[k] + 1e-9 for k in snapshot)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snapshot = ledger.snapshot()
    for pool in capacity:
        held = sum(a for p, a in taken if p == pool)
        assert snapshot.get(pool, 0.0) == pytest.approx(held, abs=1e-6)
        assert held <= capacity[pool] + 1e-9
    assert sum(a for _, a in taken) > 60  # the pools really filled up: the test exercised contention


def test_concurrent_engine_placements_never_overcommit_or_break_a_promise():
    eng = engine(shrink(TINY, counts={"zhongwei": 12, "shaoguan": 12, "shantou": 12}))
    decisions = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for i in range(25):
            b = Batch("singapore", "llm-70b", rng.randint(100, 5000), rng.randint(50, 1500), rng.randint(1, 8),
                      ttft_ms=rng.choice([400.0, 800.0, 30_000.0]), id=f"{seed}-{i}")
            d = eng.place(b, hour=3)
            if d.placed:
                with lock:
                    decisions.append(d)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    from test_engine_support import recheck

    assert len(decisions) > 10
    assert recheck(eng.catalog, decisions, 3) == []
    held = {}
    for d in decisions:
        held[d.pool] = held.get(d.pool, 0.0) + d.load
    assert {k: v for k, v in eng.ledger.snapshot().items() if not k.startswith("cable:")} == pytest.approx(held)
