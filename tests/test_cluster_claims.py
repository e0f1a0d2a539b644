"""A claim's bound on what its run can still hold, and the same as holds booked again after a restart."""

from __future__ import annotations

import pytest

from scheduler.cluster.claims import Claim


def claim() -> Claim:
    return Claim(7, 1, {"a": 20.0}, {"a": 7.0}, {"a": 40.0}, 30.0, 10.0, 1.0, {"a": [7.0, 6.0, 4.0, 4.0]},
                 {"a": 5.0})


def test_the_bound_is_the_profile_plus_the_budget_until_new_holds_have_ended():
    c = claim()
    assert c.held_bound(11.5, new_until=50.0) == {"a": 6.0 + 5.0}
    assert c.held_bound(25.0, new_until=20.0) == {"a": 4.0}  # the last step lasts until the horizon
    assert c.held_bound(30.0, new_until=20.0) == {"a": 0.0}
    assert Claim.parse(c.encode()) == c


def test_as_holds_books_the_same_bound_again():
    c = claim()
    holds = c.as_holds(10.5, new_until=45.0)
    assert sorted(holds) == sorted([("a", 1.0, 40.0, 11.0), ("a", 2.0, 40.0, 12.0), ("a", 4.0, 40.0, 30.0),
                                    ("a", 5.0, 40.0, 45.0)])
    for t in (10.6, 11.5, 12.5, 29.0, 44.0):
        live = sum(a for _, a, _, end in holds if end > t)
        assert live == pytest.approx(c.held_bound(t, new_until=45.0)["a"])
