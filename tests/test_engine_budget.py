"""Budgets of new holds between claims, and the end-time profile of holds (cluster mode's bound on what a dead
replica can still hold)."""

from __future__ import annotations

import random

import pytest

from scheduler.engine.budget import MAX_OPEN, NewHolds, end_profile, held_at


def test_end_profile_bounds_the_holds_live_at_every_later_time():
    rng = random.Random(7)
    for _ in range(200):
        now, step, steps = 100.0, rng.choice((0.5, 1.0, 2.5)), rng.randint(1, 12)
        items = [(rng.choice("ab"), rng.uniform(0.1, 3.0), now + rng.uniform(-5, 40))
                 for _ in range(rng.randint(0, 30))]
        horizon = max([e for _, _, e in items] + [now])
        profile = end_profile(items, now, step, steps)
        for _ in range(50):
            t = now + rng.uniform(0, 45)
            for key in "ab":
                live = sum(a for k, a, e in items if k == key and e > t)
                bound = held_at(profile.get(key, []), now, step, horizon, t)
                assert bound >= live - 1e-9
                # and it is tight at the step's start: nothing ending before the step counts
                start = now + step * min(steps - 1, int((t - now) // step))
                assert bound <= sum(a for k, a, e in items if k == key and e > start) + 1e-9


def test_end_profile_steps():
    profile = end_profile([("a", 1.0, 10.5), ("a", 2.0, 12.0), ("a", 4.0, 30.0), ("b", 1.0, 9.0)], 10.0, 1.0, 4)
    assert profile == {"a": [7.0, 6.0, 4.0, 4.0]}  # b ended already; the 30 s hold stays in the last step
    assert held_at(profile["a"], 10.0, 1.0, 30.0, 11.5) == 6.0
    assert held_at(profile["a"], 10.0, 1.0, 30.0, 25.0) == 4.0  # past the last edge: the last step ...
    assert held_at(profile["a"], 10.0, 1.0, 30.0, 30.0) == 0.0  # ... until the horizon


def test_every_unacknowledged_budget_binds_until_a_later_claim_is_stored():
    holds = NewHolds()
    first = holds.open({"a": 10.0}, 0.0)
    assert holds.room("a") == 10.0 and holds.room("b") == 0.0
    holds.spend("a", 6.0, 6.0)
    second = holds.open({"a": 8.0}, 1.0)  # its put may or may not land: both promises stand
    assert holds.room("a") == pytest.approx(4.0)
    holds.spend("a", 3.0, 3.0)
    assert holds.room("a") == pytest.approx(1.0)
    holds.acknowledged(second.seq)  # etcd shows the second claim (or a later one): the first no longer binds
    assert holds.room("a") == pytest.approx(5.0)
    holds.acknowledged(first.seq)  # an older acknowledgement changes nothing
    assert holds.room("a") == pytest.approx(5.0)


def test_spend_says_when_the_newest_budget_is_half_used():
    holds = NewHolds()
    holds.open({"a": 10.0}, 0.0)
    assert not holds.spend("a", 4.0, 4.0)
    assert holds.spend("a", 2.0, 2.0)


def test_unacknowledged_windows_are_bounded():
    holds = NewHolds()
    windows = [holds.open({"a": 10.0 + i}, float(i)) for i in range(MAX_OPEN + 5)]
    assert len(holds.windows) == MAX_OPEN
    assert windows[-1] is windows[MAX_OPEN - 1]  # the newest is announced again: its promise stands for later
