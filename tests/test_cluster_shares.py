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
