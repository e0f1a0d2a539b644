"""bounds/subgradient.py: Polyak steps keep prices nonnegative, keep the best value seen, and stop at the target."""

from __future__ import annotations

import numpy as np

from scheduler.engine.solve.bounds import subgradient


def _dual(price: np.ndarray) -> tuple[float, np.ndarray]:
    # min over x in [0, 3] of (1 - price) x + 2 price, the Lagrangian of "min -x s.t. x <= 2": max at price 1, value -2
    x = 3.0 if price[0] < 1.0 else 0.0
    return (-x + price[0] * (x - 2.0)), np.array([x])


def test_the_ascent_approaches_the_dual_optimum_and_never_loses_its_best():
    run = subgradient.polyak(_dual, np.array([0.0]), np.array([2.0]), upper=-2.0, steps=30)
    assert run.best <= -2.0 + 1e-12  # weak duality: never above the primal optimum
    assert run.best > -3.0  # better than the start (value -3 at price 0)
    assert all((p >= 0).all() for p in run.seen)
    assert _dual(run.price)[0] == run.best
    values = [_dual(p)[0] for p in run.seen]
    assert run.best == max(values)


def test_it_stops_once_the_value_reaches_the_target():
    run = subgradient.polyak(_dual, np.array([1.0]), np.array([2.0]), upper=-2.0, steps=30)
    assert len(run.seen) == 1 and run.best == -2.0
