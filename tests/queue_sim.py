"""A discrete-event simulation of the queue scheduler/queueing.py models: Poisson arrivals, c servers, first come
first served, exponential service of mean s. Written from the queue's definition, independent of the formulas it
checks; used by tests/test_queueing.py and benchmarks/latency_model.py.

The queue starts in its stationary state (the number in system drawn from the M/M/c distribution), so no warm-up
is thrown away and no start-up bias is left; near saturation the waits are strongly correlated, so `requests`
must grow like 1 / (c (1 - u)^2) for the same precision.
"""

from __future__ import annotations

import heapq
import math

import numpy as np


def waits(c: int, utilization: float, service_ms: float, requests: int, seed: int) -> np.ndarray:
    """The waiting time (ms) of each of `requests` requests, in arrival order."""
    rng = np.random.default_rng(seed)
    rate = utilization * c / service_ms  # arrivals per ms
    gaps = rng.exponential(1.0 / rate, requests)
    service = rng.exponential(service_ms, requests)
    in_system = _stationary_count(c, utilization, rng)
    if c == 1:
        return _lindley(gaps, service, in_system, service_ms, rng)
    # Server free times at time 0: busy servers hold a fresh exponential residual (memoryless); queued requests
    # go through them first, first come first served.
    free = sorted(rng.exponential(service_ms, min(in_system, c)).tolist() + [0.0] * max(c - in_system, 0))
    for s in rng.exponential(service_ms, max(in_system - c, 0)).tolist():
        heapq.heapreplace(free, free[0] + s)
    out = np.empty(requests)
    t = 0.0
    for i, (gap, s) in enumerate(zip(gaps.tolist(), service.tolist())):
        t += gap
        start = free[0] if free[0] > t else t
        out[i] = start - t
        heapq.heapreplace(free, start + s)
    return out


def _lindley(gaps: np.ndarray, service: np.ndarray, in_system: int, service_ms: float,
             rng: np.random.Generator) -> np.ndarray:
    """One server: W_{n+1} = max(0, W_n + S_n - A_{n+1}), vectorized as a walk less its running minimum."""
    backlog = float(rng.exponential(service_ms, in_system).sum()) if in_system else 0.0  # work ahead of request 0
    steps = np.empty(len(gaps))
    steps[0] = backlog - gaps[0]  # request 0 arrives after the first gap
    steps[1:] = service[:-1] - gaps[1:]
    walk = np.cumsum(steps)
    return walk - np.minimum(np.minimum.accumulate(walk), 0.0)


def _stationary_count(c: int, u: float, rng: np.random.Generator) -> int:
    """A draw of the number of requests in an M/M/c system in steady state."""
    a = c * u
    logs = [k * math.log(a) - math.lgamma(k + 1) if a > 0 else (0.0 if k == 0 else -math.inf) for k in range(c)]
    top = c * math.log(a) - math.lgamma(c + 1) - math.log(1 - u) if a > 0 else -math.inf  # P(N >= c), unnormalized
    peak = max(logs + [top])
    weights = np.exp(np.array(logs + [top]) - peak)
    k = int(rng.choice(c + 1, p=weights / weights.sum()))
    return k if k < c else c + int(rng.geometric(1 - u)) - 1
