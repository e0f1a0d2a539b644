"""Polyak subgradient ascent on pool prices, shared by the bounds that price capacity (capacity_prices.py,
pool_levels.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Ascent:
    best: float  # the highest Lagrangian value seen (each is a valid bound of its problem)
    price: np.ndarray  # the prices it was seen at
    seen: list[np.ndarray]  # every price evaluated, in order


def polyak(evaluate: Callable[[np.ndarray], tuple[float, np.ndarray]], start: np.ndarray, free: np.ndarray,
           upper: float, steps: int) -> Ascent:
    """Up to `steps` evaluations from `start`: step toward use - free, sized by how far the value is from `upper`
    (the objective of an assignment found), halved whenever the value falls; prices stay >= 0. `evaluate` gives
    the value at some prices and the pool use of the choices behind it."""
    price, step = np.maximum(start, 0.0), 1.0
    best, best_price, seen = -np.inf, price, []
    for _ in range(steps):
        seen.append(price)
        total, used = evaluate(price)
        if total >= best:
            best, best_price = total, price
        else:
            step /= 2
        g = used - free
        norm = float(g @ g)
        if norm <= 0 or upper <= total:
            break
        price = np.maximum(price + step * (upper - total) / norm * g, 0.0)
    return Ascent(best, best_price, seen)
