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

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)  # what an SLO may name
DEFAULT_PERCENTILE = 95.0
GRID = 1 << 16  # utilization steps in the inverse's tables: ceilings are exact to 1/GRID of a pool, rounded down
STEPS = 1 << 16  # steps of log(1 + wait / service) in the inverse's tables, over [0, H_MAX]
H_MAX = 8.0  # waits up to e^8 ~ 3,000 service times; longer budgets get the ceiling of that one


def servers(count: int | np.ndarray, parallelism: int | np.ndarray) -> np.ndarray:
    """Servers a pool holds: accelerators over the accelerators one request's prefill takes (at least one)."""
    return np.maximum(np.asarray(count) // np.asarray(parallelism), 1)


def erlang_c(c: int, utilization: np.ndarray) -> np.ndarray:
    """P(a request waits) in M/M/c at each utilization (1 at or past saturation), by the stable Erlang B recursion
    B_k = a B_{k-1} / (k + a B_{k-1}), then C = B / (1 - u (1 - B))."""
    u = np.asarray(utilization, dtype=float)
    a = c * np.clip(u, 0.0, None)
    b = np.ones_like(a)
    for k in range(1, int(c) + 1):
        b = a * b / (k + a * b)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = b / (1.0 - u * (1.0 - b))
    return np.where(u >= 1.0, 1.0, np.clip(out, 0.0, 1.0))


@lru_cache(maxsize=256)
def _waiting_table(c: int) -> np.ndarray:
    """C(c, u) on the grid u = i / GRID, i = 0..GRID-1 (read-only)."""
    table = erlang_c(c, np.arange(GRID) / GRID)
    table.setflags(write=False)
    return table


def waiting_probability(c: np.ndarray, utilization: np.ndarray) -> np.ndarray:
    """C(c, u) element-wise over arrays of server counts and utilizations (exact, one recursion per distinct c)."""
    c = np.asarray(c)
    u = np.asarray(utilization, dtype=float)
    c, u = np.broadcast_arrays(c, u)
    out = np.empty(u.shape)
    for k in np.unique(c).tolist():
        at = c == k
        out[at] = erlang_c(int(k), u[at])
    return out


def wait_ms(service_ms: np.ndarray, c: np.ndarray, utilization: np.ndarray, percentile: np.ndarray) -> np.ndarray:
    """The wait that `percentile` % of requests do not exceed (ms); inf at or past saturation."""
    s, c, u, p = np.broadcast_arrays(np.asarray(service_ms, float), np.asarray(c), np.asarray(utilization, float),
                                     np.asarray(percentile, float))
    tail = 1.0 - p / 100.0
    waiting = waiting_probability(c, u)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = s * np.log(np.maximum(waiting / tail, 1.0)) / (c * (1.0 - u))
    t = np.where(u >= 1.0, np.inf, t)
    return np.where((s == 0) & (u < 1.0), 0.0, t)


def mean_wait_ms(service_ms: np.ndarray, c: np.ndarray, utilization: np.ndarray) -> np.ndarray:
    """The mean wait (ms): C s / (c (1 - u)); inf at or past saturation."""
    s, c, u = np.broadcast_arrays(np.asarray(service_ms, float), np.asarray(c), np.asarray(utilization, float))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = waiting_probability(c, u) * s / (c * (1.0 - u))
    return np.where(u >= 1.0, np.inf, np.where(s == 0, 0.0, t))


def within_probability(wait_budget_ms: np.ndarray, service_ms: np.ndarray, c: np.ndarray,
                       utilization: np.ndarray) -> np.ndarray:
    """P(W <= budget): the share of requests whose wait fits the budget (0 where the budget is negative)."""
    t, s, c, u = np.broadcast_arrays(np.asarray(wait_budget_ms, float), np.asarray(service_ms, float),
                                     np.asarray(c), np.asarray(utilization, float))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        decay = np.where(s > 0, np.exp(-c * (1.0 - u) * np.maximum(t, 0.0) / s), 0.0)
    share = 1.0 - waiting_probability(c, u) * decay
    share = np.where(u >= 1.0, 0.0, share)
    return np.where(t < 0, 0.0, share)


def ceiling_utilization(service_ms: np.ndarray, budget_ms: np.ndarray, c: np.ndarray,
                        percentile: np.ndarray) -> np.ndarray:
    """The highest utilization at which service + the percentile's wait still fits the budget (ms), rounded down
    (so it always fits, and lies within 2e-4 of the exact one); -inf where even an idle pool is too slow.

    The wait in service times, g(u) = t_p(u) / s = ln(max(C(c, u) / (1 - p), 1)) / (c (1 - u)), grows with u and
    depends on the pool only, so each (servers, percentile) gets one table of its inverse over log(1 + g), and each
    pair one read in it: log(budget / service) picks the entry. `c` and `percentile` broadcast against the pairs;
    servers per column and a percentile per row (the engine's layout) take the fast path.
    """
    s, budget = np.broadcast_arrays(np.asarray(service_ms, float), np.asarray(budget_ms, float))
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.divide(budget, s, out=np.empty(s.shape))  # 1 + the wait the budget leaves, in service times
    np.maximum(h, 1.0, out=h)
    np.log(h, out=h)
    h *= (STEPS - 1) / H_MAX
    np.minimum(h, STEPS - 1, out=h)
    step = h.astype(np.int64)  # truncation rounds down
    c, p = np.asarray(c), np.asarray(percentile, float)
    if s.ndim == 2 and c.size == s.shape[1] and p.size in (1, s.shape[0]):
        # The engine's layout, servers per column and a percentile per row: one gather from the tables side by side.
        cols, rows = c.reshape(-1), np.broadcast_to(p.reshape(-1), s.shape[:1])
        ks, qs = np.unique(cols), np.unique(rows)
        tables = _side_by_side(tuple(ks.tolist()), tuple(qs.tolist()))
        which = np.searchsorted(ks, cols)[None, :] * STEPS  # (1, T); plus (B, 1) when percentiles differ
        if len(qs) > 1:
            which = which + np.searchsorted(qs, rows)[:, None] * (len(ks) * STEPS)
        step += which
        out = tables[step]
    else:
        out = np.empty(s.shape)
        c, p = np.broadcast_to(c, s.shape), np.broadcast_to(p, s.shape)
        for k in np.unique(c).tolist():
            of_c = c == k
            for q in np.unique(p[of_c]).tolist():
                at = of_c & (p == q)
                out[at] = _inverse_table(int(k), float(q))[step[at]]
    out[~(budget >= s)] = -np.inf
    return out


@lru_cache(maxsize=64)
def _side_by_side(ks: tuple[int, ...], qs: tuple[float, ...]) -> np.ndarray:
    """The inverse tables of every (percentile, servers) pair, flat, percentile-major (read-only)."""
    table = np.concatenate([_inverse_table(int(k), float(q)) for q in qs for k in ks])
    table.setflags(write=False)
    return table


@lru_cache(maxsize=1024)
def _inverse_table(k: int, q: float) -> np.ndarray:
    """u(h): the highest grid utilization whose wait, in service times g, has log1p(g) <= h, for h on a uniform
    grid of STEPS points over [0, H_MAX] (read-only). g(u) = ln(max(C / (1 - p), 1)) / (k (1 - u)) is
    nondecreasing in u, so this is its inverse, rounded down on both grids (every answer fits)."""
    grid = np.arange(GRID) / GRID
    with np.errstate(divide="ignore"):
        g = np.log(np.maximum(_waiting_table(k) / (1.0 - q / 100.0), 1.0)) / (k * (1.0 - grid))
    h = np.linspace(0.0, H_MAX, STEPS)
    i = np.searchsorted(np.log1p(g), h, side="right") - 1
    table = np.where(i >= 0, i / GRID, -np.inf)
    table.setflags(write=False)
    return table
