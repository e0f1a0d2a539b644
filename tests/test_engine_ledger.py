"""The capacity ledger: expiry on an injected clock, release, all-or-nothing, ceilings, and concurrency."""

from __future__ import annotations

import heapq
import math
import random
import threading
import time

import numpy as np
import pytest

from scheduler.engine.budget import Pace
from scheduler.engine.ledger import TOLERANCE, Ledger, Reservation
from scheduler.engine.request import Batch
from engine_fixtures import TINY, engine, shrink


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


def test_other_replicas_ceilings_cap_the_pool_but_are_not_published_as_this_one_s():
    """Cluster mode: a promise another replica made on a pool binds this replica's placements there too."""
    ledger = Ledger(Clock())
    ledger.set_shares({"a": 100.0}, {"a": 0.0}, {"a": 5.0, "b": math.inf})
    assert ledger.ceilings(["a", "b"]).tolist() == [5.0, float("inf")]  # the kept-current view follows
    assert ledger.try_reserve([("a", 5.5, 10.0)], {"a": 100.0}) is None  # past the other replica's promise
    assert ledger.try_reserve([("a", 2.0, 10.0, 8.0)], {"a": 100.0}) is not None
    assert ledger.reserve_many(["a"], np.array([0]), np.array([3.5]), np.array([10.0]), np.array([math.inf]),
                               np.array([100.0])) is None  # 2 + 3.5 > 5
    assert ledger.own_ceilings() == {"a": 8.0}  # only this process's own promises go out to the others
    ledger.set_shares({"a": 100.0}, {"a": 0.0}, {})  # the other replica's hold ended
    assert ledger.ceilings(["a"]).tolist() == [8.0]
    assert ledger.try_reserve([("a", 5.5, 10.0)], {"a": 100.0}) is not None


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
    from engine_fixtures import recheck

    assert len(decisions) > 10
    assert recheck(eng.catalog, decisions, 3) == []
    held = {}
    for d in decisions:
        held[d.pool] = held.get(d.pool, 0.0) + d.load
    assert {k: v for k, v in eng.ledger.snapshot().items() if not k.startswith("cable:")} == pytest.approx(held)


class ReferenceLedger:
    """The ledger as first written, one heap entry and one record per item: the specification the bulk
    bookkeeping (blocks of items, one expiry entry per block) must match float for float."""

    def __init__(self, clock):
        self.clock, self.used, self.expiry, self.live, self.ceilings, self.next_id = clock, {}, [], {}, {}, 1

    def _expire(self):
        while self.expiry and self.expiry[0][0] <= self.clock():
            _, rid, pool, amount = heapq.heappop(self.expiry)
            if self.live.pop(rid, None) is not None:
                self._free(pool, amount)

    def _free(self, pool, amount):
        left = self.used.get(pool, 0.0) - amount
        self.used[pool] = left if left > TOLERANCE else 0.0

    def _ceiling(self, pool):
        heap = self.ceilings.get(pool)
        while heap and heap[0][1] not in self.live:
            heapq.heappop(heap)
        return heap[0][0] if heap else math.inf

    def try_reserve(self, items, capacity):
        self._expire()
        need, lowest = {}, {}
        for pool, amount, _, ceiling in items:
            need[pool] = need.get(pool, 0.0) + amount
            lowest[pool] = min(lowest.get(pool, math.inf), ceiling)
        for pool, amount in need.items():
            if self.used.get(pool, 0.0) + amount > min(capacity[pool], self._ceiling(pool), lowest[pool]) + TOLERANCE:
                return None
        out = []
        for pool, amount, hold, ceiling in items:
            r = Reservation(self.next_id, pool, amount, self.clock() + hold, ceiling)
            self.next_id += 1
            self.used[pool] = self.used.get(pool, 0.0) + amount
            self.live[r.id] = r
            heapq.heappush(self.expiry, (r.expires_at, r.id, pool, amount))
            if ceiling < math.inf:
                heapq.heappush(self.ceilings.setdefault(pool, []), (ceiling, r.id))
            out.append(r)
        return out

    def release(self, rid):
        r = self.live.pop(rid, None)
        if r is not None:
            self._free(r.pool, r.accelerators)
        return r is not None

    def state(self, keys):
        self._expire()
        return ([self.used.get(k, 0.0) for k in keys], [self._ceiling(k) for k in keys], dict(self.live))


@pytest.mark.parametrize("seed", range(30))
def test_the_ledger_books_exactly_as_one_record_per_item_would(seed):
    """try_reserve and reserve_many against the per-item reference: same refusals, same ids, the same floats for
    usage and ceilings after any mix of reservations, releases and expiries."""
    rng = random.Random(seed)
    keys = ["a", "b", "cable:x", "c"]
    capacity = {"a": 10.0, "b": 6.0, "cable:x": 2.0, "c": 1e9}
    clock = Clock()
    ref, one, many = ReferenceLedger(clock), Ledger(clock), Ledger(clock)
    refused = 0
    for step in range(60):
        items = []
        for _ in range(rng.randint(0, 12)):
            k = rng.randrange(len(keys))
            ceiling = rng.choice([math.inf, rng.uniform(0.5, 12.0)])
            hold = rng.choice([rng.uniform(1.0, 50.0), 10.0])  # ties in expiry too
            items.append((keys[k], rng.uniform(0.0, 1.5) * rng.choice([1, 1, 0.1]), hold, ceiling))
        want = ref.try_reserve(items, capacity)
        refused += want is None
        assert one.try_reserve(items, capacity) == want
        first = many.reserve_many(keys, np.array([keys.index(it[0]) for it in items], dtype=np.int64),
                                  *(np.array([it[j] for it in items], dtype=float) for j in (1, 2, 3)),
                                  np.array([capacity[k] for k in keys]))
        assert (first is None) == (want is None)
        if want:
            assert [r.id for r in want] == list(range(first, first + len(items)))
        live = sorted(ref.live)
        if rng.random() < 0.4 and live:  # release a few (some twice), and let time pass
            for rid in rng.sample(live, k=min(4, len(live))) + live[:1]:
                assert one.release(rid) == ref.release(rid) == many.release(rid)
        clock.now += rng.choice([0.0, 5.0, rng.uniform(0.0, 12.0)])
        used, ceilings, reservations = ref.state(keys)
        for ledger in (one, many):
            assert ledger.used(keys).tolist() == used and ledger.ceilings(keys).tolist() == ceilings
            assert ledger.reservations() == reservations
    assert 0 < refused < 60


def test_reserve_many_is_all_or_nothing_and_each_id_releases_its_own_item():
    ledger = Ledger(Clock())
    keys = ["a", "b"]
    cap = np.array([8.0, 5.0])
    # b would need 6 > 5: nothing is taken, a included.
    assert ledger.reserve_many(keys, np.array([0, 1]), np.array([3.0, 6.0]), np.array([10.0, 10.0]),
                               np.array([np.inf, np.inf]), cap) is None
    assert ledger.snapshot() == {}
    first = ledger.reserve_many(keys, np.array([0, 1, 0]), np.array([3.0, 2.0, 1.0]), np.array([10.0] * 3),
                                np.array([np.inf, np.inf, 4.5]), cap)
    assert ledger.snapshot() == {"a": 4.0, "b": 2.0} and ledger.ceilings(keys).tolist() == [4.5, np.inf]
    # The ceiling of the third item now caps pool a: 4 + 0.6 > 4.5.
    assert ledger.reserve_many(keys, np.array([0]), np.array([0.6]), np.array([1.0]), np.array([np.inf]), cap) is None
    assert ledger.release(first + 1) and ledger.snapshot() == {"a": 4.0}
    assert ledger.release_many([first, first + 2, first + 2, 999]) == 2
    assert ledger.snapshot() == {} and ledger.ceilings(keys).tolist() == [np.inf, np.inf]


def test_concurrent_reserve_many_never_overcommits():
    ledger = Ledger()
    keys = ["a", "b"]
    capacity = np.array([50.0, 30.0])
    errors: list[str] = []

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(200):
            n = int(rng.integers(1, 6))
            key = rng.integers(0, 2, n)
            first = ledger.reserve_many(keys, key, rng.uniform(0.1, 3.0, n), np.full(n, 60.0), np.full(n, np.inf),
                                        capacity)
            if first is not None and rng.random() < 0.3:
                ledger.release_many(range(first, first + n))
            snapshot = ledger.snapshot()
            if any(snapshot.get(k, 0.0) > c + 1e-9 for k, c in zip(keys, capacity)):
                errors.append(repr(snapshot))

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    held = ledger.snapshot()
    assert held.get("a", 0.0) > 40 and held.get("b", 0.0) > 20  # they really contended for the room


def test_holds_restored_from_an_earlier_run_never_move_this_run_s_ids_into_theirs():
    """A restart restores the holds of an earlier run, whose boot number may be higher or lower than this run's:
    the new run keeps issuing ids from its own range (a restore once bumped the counter into the old run's range
    whenever the old boot number was higher, so new ids named the old run)."""
    from scheduler.engine.ledger import RUN_ID_BITS

    for old_boot in (3, 9):
        ledger = Ledger(first_id=(5 << RUN_ID_BITS) | 1)
        old_first = (old_boot << RUN_ID_BITS) | 1
        assert ledger.restore(old_first, ["a", "a"], [1.0, 2.0], [math.inf] * 2, [time.time() + 60] * 2) == 2
        (new,) = ledger.try_reserve([("a", 1.0, 10.0)], {"a": 8.0})
        assert new.id >> RUN_ID_BITS == 5 and new.id not in (old_first, old_first + 1)
    # Restoring this run's own ids (a replayed journal) still never hands them out again.
    ledger = Ledger(first_id=(5 << RUN_ID_BITS) | 1)
    ledger.restore((5 << RUN_ID_BITS) | 1, ["a"], [1.0], [math.inf], [time.time() + 60])
    (new,) = ledger.try_reserve([("a", 1.0, 10.0)], {"a": 8.0})
    assert new.id == (5 << RUN_ID_BITS) | 2


def test_budget_of_new_holds_caps_placements_between_claims():
    """Cluster mode: between the claims a replica publishes it holds at most the budget anew on each key (the
    leader bounds a dead replica's holds by its last claim's profile plus that budget)."""
    clock = Clock()
    ledger = Ledger(clock, wall=lambda: clock.now + 5000.0)
    ledger.set_shares({"a": 100.0, "b": 100.0}, {"a": 0.0, "b": 0.0}, {})
    low: list[int] = []
    ledger.budget_low = lambda: low.append(1)
    first = ledger.announce(lambda pace: {"a": 10.0}, 1.0, 4)
    assert ledger.try_reserve([("b", 1.0, 10.0)], {"b": 100.0}) is None  # no budget on b
    assert ledger.try_reserve([("a", 4.0, 10.0)], {"a": 100.0}) is not None and not low
    assert ledger.ceilings(["a"]).tolist() == [10.0]  # the engine sees the budget as a cap on the load
    assert ledger.try_reserve([("a", 2.0, 2.5)], {"a": 100.0}) is not None and low  # half used: publish soon
    clock.now += 0.5
    paces = []
    second = ledger.announce(lambda pace: paces.append(pace) or {"a": 10.0}, 1.0, 4)
    assert second.window > first.window and paces == [Pace({"a": 6.0}, 0.5, {"a": 4.0})]
    assert second.used == {"a": 6.0} and second.wall == 6000.5 and second.horizon == 6010.0
    assert second.profile == {"a": [6.0, 6.0, 4.0, 4.0]}  # the 2 s left of the 2.5 s hold end after edge 1
    # Both budgets bind until the second claim is stored: 4 left of the first.
    assert ledger.reserve_many(["a"], np.array([0]), np.array([4.5]), np.array([10.0]), np.array([math.inf]),
                               np.array([100.0])) is None
    ledger.announced(second.window)
    assert ledger.reserve_many(["a"], np.array([0]), np.array([4.5]), np.array([10.0]), np.array([math.inf]),
                               np.array([100.0])) is not None
    ledger.release_many([r for r in ledger.reservations()])  # releases give no budget back ...
    assert ledger.try_reserve([("a", 6.0, 10.0)], {"a": 100.0}) is None
    assert ledger.ceilings(["a"]).tolist() == [5.5]  # ... and the cap on the load follows the holds down


def test_a_share_not_renewed_in_time_places_nothing():
    clock = Clock()
    ledger = Ledger(clock)
    ledger.set_shares({"a": 100.0}, {"a": 0.0}, {})
    ledger.renewed(clock.now + 2.0)
    assert ledger.try_reserve([("a", 1.0, 10.0)], {"a": 100.0}) is not None
    clock.now += 2.0
    assert ledger.try_reserve([("a", 1.0, 10.0)], {"a": 100.0}) is None
    ledger.renewed(clock.now + 2.0)
    assert ledger.try_reserve([("a", 1.0, 10.0)], {"a": 100.0}) is not None


def test_a_cable_s_budget_shows_as_load():
    """The engine reads a cable's room off its load: with a budget, the room it sees is the lesser of the share's
    and the budget's (a pool's shows as a ceiling instead, so its load stays the latency bound)."""
    ledger = Ledger(Clock())
    cable = "cable:x"
    ledger.set_shares({cable: 40.0, "a": 50.0}, {cable: 60.0, "a": 50.0}, {})
    ledger.announce(lambda pace: {cable: 15.0, "a": 5.0}, 1.0, 2)
    assert ledger.used([cable, "a"]).tolist() == [85.0, 50.0]  # cable: 100 - 15 left; pool: its load
    assert ledger.ceilings([cable, "a"]).tolist() == [75.0, 55.0]
    assert ledger.try_reserve([(cable, 10.0, 10.0)], {cable: 100.0}) is not None
    assert ledger.used([cable]).tolist() == [95.0]
    assert ledger.try_reserve([(cable, 6.0, 10.0)], {cable: 100.0}) is None
    assert ledger.promised_ceilings([cable, "a"]) == [math.inf, math.inf]


def test_the_budget_s_cap_follows_a_new_share():
    """A new share moves the others' background on a key, and with it the budget's cap on the key's load: the
    engine's view must follow (a stale, lower cap refused placements the ledger would take)."""
    ledger, keys = Ledger(Clock()), ["a"]  # one list: the ledger keeps its view current
    ledger.set_shares({"a": 50.0}, {"a": 50.0}, {})
    ledger.announce(lambda pace: {"a": 10.0}, 1.0, 2)
    assert ledger.ceilings(keys).tolist() == [60.0]
    ledger.set_shares({"a": 80.0}, {"a": 20.0}, {})
    assert ledger.ceilings(keys).tolist() == [30.0]
    assert ledger.used(keys).tolist() == [20.0]
