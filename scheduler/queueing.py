"""The waiting time of a request at a pool, as a distribution: M/M/c with Erlang C, and its percentiles.

A pool of `count` accelerators that prefills each request on `parallelism` of them is c = count // parallelism
servers. Requests arrive as a Poisson stream and hold a server for an exponential time of mean s (the prefill
time); at utilization u (offered load a = c u) the wait W of a request has

    P(W > 0) = C(c, a)  (Erlang C),      P(W > t) = C(c, a) exp(-c (1 - u) t / s),

so its percentiles have a closed form, t_p = s ln(C / (1 - p)) / (c (1 - u)) where C > 1 - p, else 0, and its mean
is C s / (c (1 - u)). One server (c = 1) is the M/M/1 queue the engine used before: C = u.

Pure functions of arrays. The SLO's percentile p turns the latency budget into the highest utilization at which
s + t_p(u) still fits (`ceiling_utilization`, the inverse), which is monotone in u and tabulated per server count,
so it stays as cheap as the M/M/1 closed form on 10k x 200 pairs. tests/test_queueing.py pins the inverse to the
formula and both to a discrete-event simulation of the same queue.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import gammaincc, gammaln

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)  # what an SLO may name
DEFAULT_PERCENTILE = 95.0
GRID = 1 << 16  # utilization steps in the inverse's tables: ceilings are exact to 1/GRID of a pool, rounded down
STEPS = 1 << 16  # steps of log(1 + wait / service) in the inverse's tables, over [0, H_MAX]
H_MAX = 8.0  # waits up to e^8 ~ 3,000 service times; longer budgets get the ceiling of that one


def servers(count: int | np.ndarray, parallelism: int | np.ndarray) -> np.ndarray:
    """Servers a pool holds: accelerators over the accelerators one request's prefill takes (at least one)."""
    return np.maximum(np.asarray(count) // np.asarray(parallelism), 1)


def erlang_c(c: int | np.ndarray, utilization: np.ndarray) -> np.ndarray:
    """P(a request waits) in M/M/c (1 at or past saturation), element-wise over server counts and utilizations.

    Erlang B is the Poisson(a) probability of c over that of at most c, B = P(N = c) / P(N <= c), with the pmf in
    log space and the cdf as the regularized incomplete gamma Q(c + 1, a): a few operations per point whatever c
    (the textbook recursion B_k = a B_{k-1} / (k + a B_{k-1}) takes c steps; tests pin the two to each other).
    Then C = B / (1 - u (1 - B)).
    """
    c, u = np.broadcast_arrays(np.asarray(c, dtype=float), np.asarray(utilization, dtype=float))
    a = c * np.clip(u, 0.0, None)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        b = np.exp(c * np.log(a) - a - gammaln(c + 1.0)) / gammaincc(c + 1.0, a)
        out = b / (1.0 - u * (1.0 - b))
    out = np.where(np.isfinite(out), np.clip(out, 0.0, 1.0), 0.0)
    return np.where(u >= 1.0, 1.0, out)


def wait_ms(service_ms: np.ndarray, c: np.ndarray, utilization: np.ndarray, percentile: np.ndarray) -> np.ndarray:
    """The wait that `percentile` % of requests do not exceed (ms); inf at or past saturation."""
    s, c, u, p = np.broadcast_arrays(np.asarray(service_ms, float), np.asarray(c), np.asarray(utilization, float),
                                     np.asarray(percentile, float))
    tail = 1.0 - p / 100.0
    waiting = erlang_c(c, u)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = s * np.log(np.maximum(waiting / tail, 1.0)) / (c * (1.0 - u))
    t = np.where(u >= 1.0, np.inf, t)
    return np.where((s == 0) & (u < 1.0), 0.0, t)


def mean_wait_ms(service_ms: np.ndarray, c: np.ndarray, utilization: np.ndarray) -> np.ndarray:
    """The mean wait (ms): C s / (c (1 - u)); inf at or past saturation."""
    s, c, u = np.broadcast_arrays(np.asarray(service_ms, float), np.asarray(c), np.asarray(utilization, float))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = erlang_c(c, u) * s / (c * (1.0 - u))
    return np.where(u >= 1.0, np.inf, np.where(s == 0, 0.0, t))


def within_probability(wait_budget_ms: np.ndarray, service_ms: np.ndarray, c: np.ndarray,
                       utilization: np.ndarray) -> np.ndarray:
    """P(W <= budget): the share of requests whose wait fits the budget (0 where the budget is negative)."""
    t, s, c, u = np.broadcast_arrays(np.asarray(wait_budget_ms, float), np.asarray(service_ms, float),
                                     np.asarray(c), np.asarray(utilization, float))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        decay = np.where(s > 0, np.exp(-c * (1.0 - u) * np.maximum(t, 0.0) / s), 0.0)
    share = 1.0 - erlang_c(c, u) * decay
    share = np.where(u >= 1.0, 0.0, share)
    return np.where(t < 0, 0.0, share)


def ceiling_utilization(service_ms: np.ndarray, budget_ms: np.ndarray, c: np.ndarray,
                        percentile: np.ndarray) -> np.ndarray:
    """The highest utilization at which service + the percentile's wait still fits the budget (ms), rounded down
    (so it always fits, and lies within 2e-4 of the exact one); -inf where even an idle pool is too slow.

    Any shapes that broadcast together. Servers per column and a percentile per row (the engine's layout) take
    `PoolQueues.ceiling`'s single gather; anything else one read per (servers, percentile) group, same answers.
    """
    s, budget, c, p = np.broadcast_arrays(np.asarray(service_ms, float), np.asarray(budget_ms, float),
                                          np.asarray(c), np.asarray(percentile, float))
    if s.ndim == 2 and (c == c[:1]).all() and (p == p[:, :1]).all():
        return PoolQueues(c[0]).ceiling(s, budget, p[:, 0])
    step = _steps(s, budget)
    out = np.empty(s.shape)
    for k in np.unique(c).tolist():
        of_c = c == k
        for q in np.unique(p[of_c]).tolist():
            at = of_c & (p == q)
            out[at] = _inverse_table(int(k), float(q))[step[at]]
    out[~(budget >= s)] = -np.inf
    return out if out.ndim else out[()]


def _steps(service_ms: np.ndarray, budget_ms: np.ndarray) -> np.ndarray:
    """Each pair's step in the inverse tables: log(budget / service) on the grid of H_MAX / (STEPS - 1), rounded
    down (so every ceiling read there fits)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.divide(budget_ms, service_ms, out=np.empty(service_ms.shape))  # 1 + the wait left, in service times
    np.fmax(h, 1.0, out=h)  # (0 / 0, no service and no budget: only the idle pool's zero wait)
    np.log(h, out=h)
    h *= STEP_SCALE
    np.minimum(h, STEPS - 1, out=h)
    return h.astype(np.int64)  # truncation rounds down


def grid_index(utilization: np.ndarray) -> np.ndarray:
    """The grid point at or above each utilization (GRID: saturated): tables read there never understate a wait."""
    return np.minimum(np.ceil(np.asarray(utilization, float) * GRID), GRID).astype(np.int64)


class PoolQueues:
    """The queues of a row of pools (one per column: a model's targets), for the engine's hot paths.

    Every column's percentile wait, mean wait and ceiling inverse is a table over the utilization grid, built once
    per (servers, percentile) and read with one gather. Waits are read at the grid point at or above the
    utilization, so they never understate the formula (and differ from it by at most one step, 1/GRID of the pool);
    ceilings are the inverse of the very same tables, so a pool filled to a ceiling re-checks within the SLO.
    `column` hands the single-batch path the same tables as memoryviews (Python floats per read).
    """

    def __init__(self, servers: np.ndarray):
        self.servers = np.asarray(servers, dtype=np.int64).reshape(-1)
        ks, col = np.unique(self.servers, return_inverse=True)
        self._key = tuple(ks.tolist())
        self._at = col.astype(np.int64) * (GRID + 1)  # each column's offset in the side-by-side wait tables
        self._inv_at = col.astype(np.int64) * STEPS  # and in the inverse tables
        self._col = col.astype(np.int64)

    def wait_factor(self, utilization: np.ndarray, percentile: float, cols: np.ndarray | None = None) -> np.ndarray:
        """The percentile's wait in service times at each utilization; `cols` says which column each one is in
        (default: one per column, in order). inf at or near saturation (above the last grid point below 1)."""
        at = self._at if cols is None else self._at[cols]
        return _side_by_side(self._key, float(percentile), "wait")[at + grid_index(utilization)]

    def mean_factor(self, utilization: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
        """The mean wait in service times, as `wait_factor` reads it."""
        at = self._at if cols is None else self._at[cols]
        return _side_by_side(self._key, 0.0, "mean")[at + grid_index(utilization)]

    def ceiling(self, service_ms: np.ndarray, budget_ms: np.ndarray, percentile: np.ndarray | float) -> np.ndarray:
        """(B, T) the highest grid utilization at which service + the percentile's wait fits the budget; -inf
        where even an idle pool is too slow (budget < service). One percentile, or one per row (B,).

        log(budget / service) picks the entry of each column's inverse table (`_steps`)."""
        s, budget = np.broadcast_arrays(np.asarray(service_ms, float), np.asarray(budget_ms, float))
        step = _steps(s, budget)
        p = np.asarray(percentile, float).reshape(-1)
        qs = np.unique(p)
        tables = _side_by_side(self._key, tuple(qs.tolist()), "inverse")
        step += self._inv_at[None, :] if s.ndim == 2 else self._inv_at
        if len(qs) > 1:
            step += (np.searchsorted(qs, p) * (len(self._key) * STEPS))[:, None]
        out = tables[step]
        out[~(budget >= s)] = -np.inf
        return out

    def column(self, t: int, percentile: float) -> tuple[memoryview, memoryview]:
        """Column t's wait table (index: `grid_index`) and inverse table (index: the step `ceiling` computes)."""
        k, q = self._key[self._col[t]], float(percentile)
        return memoryview(_wait_table(k, q)), memoryview(_inverse_table(k, q))

    def mean_column(self, t: int) -> memoryview:
        return memoryview(_mean_table(self._key[self._col[t]]))


STEP_SCALE = (STEPS - 1) / H_MAX  # log(budget / service) -> step of the inverse tables
_SLACK = 1e-12  # the inverse keeps this far inside each step, so float rounding never lets a ceiling overshoot


def _read_only(table: np.ndarray) -> np.ndarray:
    table.setflags(write=False)
    return table


@lru_cache(maxsize=128)
def _wait_table(k: int, q: float) -> np.ndarray:
    """(GRID + 1,) the q-th percentile wait in service times at u = i / GRID, g(u) = ln(max(C / (1 - q), 1)) /
    (k (1 - u)); the last entry (u = 1) is inf."""
    grid = np.arange(GRID) / GRID
    with np.errstate(divide="ignore"):
        g = np.log(np.maximum(erlang_c(k, grid) / (1.0 - q / 100.0), 1.0)) / (k * (1.0 - grid))
    return _read_only(np.append(g, np.inf))


@lru_cache(maxsize=64)
def _mean_table(k: int) -> np.ndarray:
    """(GRID + 1,) the mean wait in service times at u = i / GRID, C / (k (1 - u)); the last entry inf."""
    grid = np.arange(GRID) / GRID
    return _read_only(np.append(erlang_c(k, grid) / (k * (1.0 - grid)), np.inf))


@lru_cache(maxsize=128)
def _inverse_table(k: int, q: float) -> np.ndarray:
    """(STEPS,) u(h): the highest grid utilization whose wait g (in service times) has log1p(g) <= h, for h on a
    uniform grid of STEPS points over [0, H_MAX]; -inf where none (read-only). g is nondecreasing in u, so this
    is its inverse, rounded down on both grids (every answer fits)."""
    g = _wait_table(k, q)[:GRID]
    h = np.linspace(0.0, H_MAX, STEPS) - _SLACK
    h[0] = 0.0  # no wait at all is exact
    i = np.searchsorted(np.log1p(g), h, side="right") - 1
    return _read_only(np.where(i >= 0, i / GRID, -np.inf))


@lru_cache(maxsize=16)
def _side_by_side(ks: tuple[int, ...], qs: float | tuple[float, ...], kind: str) -> np.ndarray:
    """One kind of table for every server count (and percentile, percentile-major) side by side, flat."""
    if kind == "mean":
        parts = [_mean_table(k) for k in ks]
    elif kind == "wait":
        parts = [_wait_table(k, qs) for k in ks]
    else:
        parts = [_inverse_table(k, q) for q in qs for k in ks]
    return _read_only(np.concatenate(parts) if parts else np.zeros(0))
