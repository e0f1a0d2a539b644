"""The leader's arithmetic: counted amounts never sum past capacity, shrinks come before growth, the dead keep
their share until their holds could have ended, demand moves shares."""

from __future__ import annotations

import random

from scheduler.cluster.shares import Member, counted, next_grants


def total(members, grants, key):
    by = {m.name: m for m in members}
    return sum(max(grants.get(n, {}).get(key, 0.0), by[n].claim.get(key, 0.0)) for n in by if by[n].alive) + \
        sum(counted(m, key) for m in members if not m.alive)


def test_growth_waits_for_the_shrink_to_be_claimed():
    a = Member("a", True, {"p": 90.0}, {"p": 90.0}, {"p": 5.0})
    b = Member("b", True, {"p": 10.0}, {"p": 10.0}, {"p": 10.0}, hungry=True)
    g = next_grants([a, b], {"p": 100.0})
    assert g["a"]["p"] < 90 and g["b"]["p"] == 10.0  # a shrinks; b may not grow while a's claim still says 90
    a2 = Member("a", True, g["a"], {"p": g["a"]["p"]}, {"p": 5.0})
    b2 = Member("b", True, g["b"], {"p": 10.0}, {"p": 10.0}, hungry=True)
    g2 = next_grants([a2, b2], {"p": 100.0})
    assert g2["b"]["p"] > 10.0 and g2["a"]["p"] + g2["b"]["p"] <= 100.0 + 1e-9


def test_a_dead_replica_keeps_its_share_until_expired():
    a = Member("a", True, {"p": 50.0}, {"p": 50.0}, {"p": 50.0}, hungry=True)
    dead = Member("d", False, {"p": 50.0}, {"p": 50.0}, {"p": 20.0})
    assert next_grants([a, dead], {"p": 100.0})["a"]["p"] == 50.0
    gone = Member("d", False, {"p": 50.0}, {"p": 50.0}, {"p": 20.0}, expired=True)
    assert next_grants([a, gone], {"p": 100.0})["a"]["p"] == 100.0


def test_random_rounds_never_count_past_capacity():
    rng = random.Random(7)
    names = ["a", "b", "c"]
    grants = {n: {"p": 100.0 / 3} for n in names}
    claims = dict(grants)
    for _ in range(300):
        members = []
        for n in names:
            # a replica acknowledges its grant or not (still in flight), and holds something within its limit
            if rng.random() < 0.6:
                claims[n] = {"p": max(grants[n]["p"], 0.0)}
            used = rng.uniform(0, min(grants[n]["p"], claims[n]["p"]))
            members.append(Member(n, True, grants[n], claims[n], {"p": used}, hungry=rng.random() < 0.3))
        new = next_grants(members, {"p": 100.0})
        assert total(members, new, "p") <= 100.0 + 1e-6
        grants = new


def test_near_full_the_free_room_goes_whole_to_one_replica():
    """Three replicas holding 30 each of 100: the 10 left are not split in three parts of 3.3 (each too small for a
    batch of 5); one replica gets all 10, the one that already had most of it."""
    members = [Member(n, True, {"p": g}, {"p": g}, {"p": 30.0}) for n, g in (("a", 33.0), ("b", 34.0), ("c", 33.0))]
    g = next_grants(members, {"p": 100.0})
    assert g["a"]["p"] == 30.0 and g["c"]["p"] == 30.0  # shrunk to their holds at once
    assert g["b"]["p"] == 34.0  # b may grow only once a's and c's shrinks are claimed
    acked = [Member(n, True, g[n], g[n], {"p": 30.0}) for n in ("a", "b", "c")]
    g2 = next_grants(acked, {"p": 100.0})
    assert g2["b"]["p"] == 40.0 and g2["a"]["p"] == g2["c"]["p"] == 30.0


def test_with_plenty_free_the_rest_is_spread_evenly():
    members = [Member(n, True, {"p": 100.0 / 3}, {"p": 100.0 / 3}, {"p": u}) for n, u in (("a", 8.0), ("b", 0.0))]
    members.append(Member("c", True, {"p": 100.0 / 3}, {"p": 100.0 / 3}, {}, wanted={"p": 6.0}))
    want = {"a": 10.0, "b": 5.0 / 3, "c": 6.0}  # a: its holds with headroom; b: the floor; c: what it refused
    spread = (100.0 - sum(want.values())) / 3
    g = next_grants(members, {"p": 100.0})
    for n in "abc":
        assert min(g[n]["p"], 100.0 / 3) == min(want[n] + spread, 100.0 / 3)  # growth waits for the shrinks
