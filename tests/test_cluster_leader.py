"""The leader's round against a real etcd (cluster/leader.py): a dead replica counts what it can still hold (its
last claim's holds as they end, plus its budget of new holds), not its whole share, and a replica back under a new
lease gets a grant for that lease only, grown into room nobody else counts."""

from __future__ import annotations

import pytest

from scheduler.cluster import leader as leading
from scheduler.cluster.claims import Claim
from scheduler.cluster.etcd_client import Etcd
from scheduler.cluster.keys import Keys, encode

CAP = {"p": 100.0}
MAX_HOLD = 30.0


def claim(lease: int, claimed: float, used: float, at: float, profile: list[float] | None = None,
          budget: float = 5.0, wanted: float = 0.0, placing_s: float = 0.0) -> bytes:
    return Claim(lease, 1, {"p": claimed}, {"p": used}, {}, at + len(profile or []), at, 1.0,
                 {"p": profile} if profile else {}, {"p": budget}, {"p": wanted} if wanted else {},
                 placing_s=placing_s).encode()


def grants(etcd: Etcd, keys: Keys) -> dict[str, leading.Grant]:
    return {keys.name_of(e.key): leading.Grant.parse(e.value) for e in etcd.get_prefix(keys.grants())}


@pytest.fixture()
def cluster(etcd):
    client = Etcd([etcd.endpoint])
    keys = Keys("/test/")
    lease = client.grant(60)
    leader = client.campaign(keys.election, lease, b"leader", 5)
    yield client, keys, leader
    client.close()


def test_a_dead_replica_counts_what_it_can_still_hold_not_its_share(cluster):
    etcd, keys, leader = cluster
    t0 = 1_000_000.0
    la, lb = etcd.grant(60), etcd.grant(60)
    etcd.put(keys.alive("a"), encode({"address": "x:1"}), lease=la)
    etcd.put(keys.alive("b"), encode({"address": "x:2"}), lease=lb)
    # a holds 10 (5 of it ending within 3 s), b is full and refused 30 more while the fleet had room.
    etcd.put(keys.claims("a"), claim(la, 50.0, 10.0, t0, [10, 10, 10, 5, 5, 5, 5, 5, 5, 5]))
    etcd.put(keys.claims("b"), claim(lb, 50.0, 48.0, t0, [48] * 10, wanted=30.0))
    etcd.put(keys.grants("a"), leading.Grant(la, {"p": 50.0}).encode())
    etcd.put(keys.grants("b"), leading.Grant(lb, {"p": 50.0}).encode())
    assert leading.rebalance(etcd, keys, leader, CAP, MAX_HOLD, now=t0) is not None
    assert grants(etcd, keys)["b"].share["p"] <= 50.0  # all counted: nothing to grow into

    etcd.revoke(la)  # a dies
    leading.rebalance(etcd, keys, leader, CAP, MAX_HOLD, now=t0 + 1)
    # a counts its 10 held + its budget of 5: b grows into the other 35 at once (before: a counted its 50 for
    # --max-hold + TTL after it was seen dead)
    assert grants(etcd, keys)["b"].share["p"] == pytest.approx(85.0)
    leading.rebalance(etcd, keys, leader, CAP, MAX_HOLD, now=t0 + 6)
    assert grants(etcd, keys)["b"].share["p"] == pytest.approx(90.0)  # half its holds ended
    leading.rebalance(etcd, keys, leader, CAP, MAX_HOLD, now=t0 + 1 + MAX_HOLD + leading.MAX_CLOCK_SKEW_S + 0.1)
    assert grants(etcd, keys)["b"].share["p"] == pytest.approx(100.0)  # its holds and any new ones ended
    assert "a" not in grants(etcd, keys)  # retired


def test_a_replica_back_under_a_new_lease_gets_room_nobody_else_counts(cluster):
    etcd, keys, leader = cluster
    t0 = 1_000_000.0
    la, lb = etcd.grant(60), etcd.grant(60)
    etcd.put(keys.alive("b"), encode({"address": "x:2"}), lease=lb)
    etcd.put(keys.claims("a"), claim(la, 50.0, 10.0, t0, [10] * 10))
    etcd.put(keys.claims("b"), claim(lb, 50.0, 48.0, t0, [48] * 10, wanted=30.0))
    etcd.put(keys.grants("a"), leading.Grant(la, {"p": 50.0}).encode())
    etcd.put(keys.grants("b"), leading.Grant(lb, {"p": 50.0}).encode())
    leading.rebalance(etcd, keys, leader, CAP, MAX_HOLD, now=t0 + 1)  # a is dead: b grows to 85
    assert grants(etcd, keys)["b"].share["p"] == pytest.approx(85.0)

    la2 = etcd.grant(60)  # a restarts: alive under a new lease, its claim still from the old one
    etcd.put(keys.alive("a"), encode({"address": "x:1"}), lease=la2)
    for i in range(3):
        leading.rebalance(etcd, keys, leader, CAP, MAX_HOLD, now=t0 + 2 + i)
        g = grants(etcd, keys)
        assert g["a"].lease == la2  # a grant for the lease it holds now (it enforces no other)
        # what a can hold (15: its old run's 10 and budget, or its new grant) and b's grant fit the pool
        assert max(g["a"].share["p"], 15.0) + g["b"].share["p"] <= 100.0 + 1e-9
    # Once a publishes a claim under its new lease, it counts by that claim again.
    etcd.put(keys.claims("a"), claim(la2, g["a"].share["p"], 10.0, t0 + 5, [10] * 10))
    leading.rebalance(etcd, keys, leader, CAP, MAX_HOLD, now=t0 + 6)
    assert etcd.get(keys.gone("a")) is None


def test_a_revoked_replica_counts_its_budget_for_as_long_as_it_may_have_gone_on_placing(cluster):
    """A lease another replica revoked (it found the port closed) ends before the replica stopped placing: that
    run may have made new holds up to `placing_s` (80 % of its TTL) after, each lasting up to --max-hold."""
    etcd, keys, leader = cluster
    t0 = 1_000_000.0
    la, lb = etcd.grant(60), etcd.grant(60)
    etcd.put(keys.alive("b"), encode({"address": "x:2"}), lease=lb)
    etcd.put(keys.claims("a"), claim(la, 50.0, 0.0, t0, [0.0] * 10, placing_s=4.0))
    etcd.put(keys.claims("b"), claim(lb, 50.0, 48.0, t0, [48] * 10, wanted=60.0))
    etcd.put(keys.grants("a"), leading.Grant(la, {"p": 50.0}).encode())
    etcd.put(keys.grants("b"), leading.Grant(lb, {"p": 50.0}).encode())
    leading.rebalance(etcd, keys, leader, CAP, MAX_HOLD, now=t0)  # a seen gone at t0
    assert grants(etcd, keys)["b"].share["p"] == pytest.approx(95.0)  # a's budget of 5 stays counted
    skew = leading.MAX_CLOCK_SKEW_S
    leading.rebalance(etcd, keys, leader, CAP, MAX_HOLD, now=t0 + MAX_HOLD + skew + 1.0)
    assert grants(etcd, keys)["b"].share["p"] == pytest.approx(95.0)  # it may have placed until t0 + 4
    leading.rebalance(etcd, keys, leader, CAP, MAX_HOLD, now=t0 + 4.0 + MAX_HOLD + skew + 0.1)
    assert grants(etcd, keys)["b"].share["p"] == pytest.approx(100.0)
