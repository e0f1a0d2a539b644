"""The M/M/c waiting-time model (scheduler/queueing.py): closed forms against known cases, the ceiling inverse
against the formula, and the formula against a discrete-event simulation of the same queue (tests/queue_sim.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import queue_sim
from scheduler import queueing

S = 104.0  # ms: a 2,000-token prefill of llm-70b on one 8-H20 server (topology/china-sea.yaml)


def test_one_server_is_the_m_m_1_queue():
    u = np.array([0.1, 0.5, 0.886, 0.99])
    assert np.allclose(queueing.erlang_c(1, u), u)
    assert np.allclose(queueing.mean_wait_ms(S, 1, u), S * u / (1 - u))
    # P(W > t) = u exp(-(1 - u) t / s): the p-th percentile solves it for t.
    p = 95.0
    assert np.allclose(queueing.wait_ms(S, 1, u, p),
                       np.where(u > 0.05, S * np.log(u / 0.05) / (1 - u), 0.0))


def test_erlang_c_matches_its_textbook_values():
    # a = 2 erlangs on 3 servers: C = 4/9 (Kleinrock, Queueing Systems I); a = 10 on 12: C ~ 0.4494.
    assert queueing.erlang_c(3, np.array(2 / 3)) == pytest.approx(4 / 9)
    assert queueing.erlang_c(12, np.array(10 / 12)) == pytest.approx(0.44937, rel=1e-4)
    # More servers at the same utilization wait less; saturation always waits.
    u = np.array(0.886)
    assert queueing.erlang_c(256, u) < queueing.erlang_c(32, u) < queueing.erlang_c(1, u)
    assert queueing.erlang_c(256, np.array(1.0)) == 1.0


def test_the_issue_s_example_pool():
    """Singapore -> zhongwei/h20 (2048 H20, 8 per request: 256 servers) at the old M/M/1 ceiling of 88.6%: as one
    server, 36.5% of requests miss a 1,000 ms TTFT (87 ms RTT); as 256 servers, about 3.6% wait at all."""
    budget = 1000.0 - 87.0 - S  # the wait a 1 s TTFT leaves
    miss_one = 1 - queueing.within_probability(budget, S, 1, 0.886)
    assert miss_one == pytest.approx(0.365, abs=0.005)
    assert queueing.erlang_c(256, np.array(0.886)) == pytest.approx(0.036, abs=0.002)
    assert 1 - queueing.within_probability(budget, S, 256, 0.886) < 1e-50


@pytest.mark.parametrize("c", [1, 2, 8, 64, 256, 512])
@pytest.mark.parametrize("p", queueing.PERCENTILES)
def test_the_ceiling_is_the_highest_utilization_whose_percentile_fits(c, p):
    budget = np.array([150.0, 300.0, 800.0, 1200.0, 5000.0, 100.0])  # ms for prefill + wait; the last: too short
    u = queueing.ceiling_utilization(S, budget, c, p)
    assert math.isinf(u[-1]) and u[-1] < 0
    ok = u[:-1]
    assert ((ok >= 0) & (ok < 1)).all()
    # At the ceiling the percentile's TTFT fits; 2e-4 of the pool above it (the tables' rounding) no longer does.
    assert (S + queueing.wait_ms(S, c, ok, p) <= budget[:-1] + 1e-9).all()
    above = ok + 2e-4
    over = S + queueing.wait_ms(S, c, above, p) > budget[:-1]
    assert (over | (above >= 1.0)).all()
    # The same against a bisection on the formula itself.
    lo, hi = np.zeros(len(ok)), np.full(len(ok), 1 - 1e-9)
    for _ in range(60):
        mid = (lo + hi) / 2
        fits = S + queueing.wait_ms(S, c, mid, p) <= budget[:-1]
        lo, hi = np.where(fits, mid, lo), np.where(fits, hi, mid)
    assert ((lo - ok >= -1e-12) & (lo - ok <= 2e-4)).all()
    # And the share of requests within the budget there is at least the percentile.
    share = queueing.within_probability(budget[:-1] - S, S, c, ok)
    assert (share >= p / 100.0 - 1e-9).all()


def test_the_ceiling_is_cheap_on_ten_thousand_by_two_hundred_pairs():
    rng = np.random.default_rng(0)
    service = rng.uniform(20, 400, (10_000, 200))
    budget = rng.uniform(300, 2000, (10_000, 200))
    c = np.broadcast_to(rng.choice([32, 64, 128, 256], 200)[None, :], service.shape)
    u = queueing.ceiling_utilization(service, budget, c, 95.0)
    assert u.shape == service.shape and np.isfinite(u[budget > service]).all()


# (servers, utilization, requests, seed): requests sized so the seeded estimate settles (waits near saturation are
# correlated over ~1 / (c (1 - u)^2) requests).
DES_CASES = [(1, 0.5, 400_000, 1), (1, 0.9, 5_000_000, 2), (4, 0.7, 400_000, 3), (8, 0.9, 1_500_000, 4),
             (64, 0.9, 400_000, 5), (256, 0.95, 1_500_000, 6)]


@pytest.mark.parametrize("c, u, requests, seed", DES_CASES)
def test_the_analytic_percentiles_match_a_simulation_of_the_queue(c, u, requests, seed):
    simulated = queue_sim.waits(c, u, S, requests, seed)
    for p in (50.0, 95.0, 99.0):
        analytic = float(queueing.wait_ms(S, c, u, p))
        measured = float(np.percentile(simulated, p))
        assert abs(analytic - measured) <= max(0.05 * max(analytic, measured), 5.0), (c, u, p, analytic, measured)
    assert float(queueing.mean_wait_ms(S, c, u)) == pytest.approx(simulated.mean(), rel=0.05, abs=5.0)
    assert float(queueing.erlang_c(c, np.array(u))) == pytest.approx((simulated > 0).mean(), abs=0.01)


def test_the_engine_layout_reads_the_same_tables_as_the_general_one():
    """Servers per column and a percentile per row take one gather from tables side by side: same answers."""
    rng = np.random.default_rng(1)
    service = rng.uniform(20, 400, (300, 12))
    budget = rng.uniform(100, 3000, (300, 12))
    c = rng.choice([1, 8, 64, 256], 12)[None, :]
    p = rng.choice(queueing.PERCENTILES, 300)[:, None]
    fast = queueing.ceiling_utilization(service, budget, c, p)
    general = queueing.ceiling_utilization(service, budget, np.broadcast_to(c, service.shape).copy(),
                                           np.broadcast_to(p, service.shape).copy())
    assert np.array_equal(fast, general)
    one = queueing.ceiling_utilization(service[:1, :1], budget[:1, :1], c[:, :1], p[:1])
    assert one[0, 0] == fast[0, 0]


def test_scalars_work_as_well_as_arrays():
    u = queueing.ceiling_utilization(S, 913.0, 8, 95.0)
    assert np.ndim(u) == 0 and 0 < float(u) < 1
    assert float(queueing.within_probability(913.0 - S, S, 8, u)) >= 0.95


@pytest.mark.parametrize("c", [1, 2, 7, 64, 256, 512])
def test_erlang_c_equals_the_textbook_recursion(c):
    """queueing.erlang_c reads Erlang B as the Poisson pmf over its cdf (O(1) per point whatever c); the textbook
    recursion B_k = a B_(k-1) / (k + a B_(k-1)) takes c steps and gives the same numbers."""
    u = np.linspace(0.0, 0.999, 400)
    a = c * u
    b = np.ones_like(a)
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    textbook = b / (1.0 - u * (1.0 - b))
    assert np.allclose(queueing.erlang_c(c, u), textbook, rtol=1e-9, atol=1e-12)


def test_erlang_c_is_cheap_and_sane_for_pools_of_many_thousand_servers():
    u = np.array([0.5, 0.9, 0.99, 0.999])
    for c in (4096, 100_000):
        w = queueing.erlang_c(c, u)
        assert np.isfinite(w).all() and (np.diff(w) > 0).all() and (w >= 0).all() and (w <= 1).all()
