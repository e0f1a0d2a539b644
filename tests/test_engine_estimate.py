"""Filter and score: the first failing check per target, the ceiling (inverse of the queueing model), pair mode."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from scheduler import queueing
from scheduler.engine.estimate import BatchArrays, ceilings, estimate, mean_ttft_ms, within_slo
from scheduler.engine.request import Reason
from engine_fixtures import TINY, engine, shrink


def arrays(cat, region="singapore", inp=2000.0, out=300.0, req=4.0, ttft=1000.0, e2e=np.inf, dc="public"):
    return BatchArrays(np.array([cat.region_index[region]]), np.array([inp]), np.array([out]), np.array([req]),
                       np.array([ttft]), np.array([e2e]), [dc])


def reasons(cat, **kw) -> dict[str, Reason]:
    mt = cat.by_model["llm-70b"]
    e = estimate(cat, mt, arrays(cat, **kw), 3, np.zeros(len(cat.pools)))
    return {cat.sites[mt.site[k]]: Reason(int(e.reason[0, k])) for k in range(len(mt))}


def test_every_site_passes_a_loose_request():
    assert set(reasons(engine(TINY).catalog).values()) == {Reason.OK}


def test_each_check_is_reported_and_the_earliest_wins():
    cat = engine(shrink(TINY, down=("zhongwei",))).catalog
    r = reasons(cat, dc="offshore-processing")
    # zhongwei is down AND not allowed for the class: the earlier check (site status) is the one reported.
    assert r == {"zhongwei": Reason.SITE_DOWN, "shaoguan": Reason.DATA_CLASS, "shantou": Reason.OK}
    r = reasons(engine(TINY).catalog, ttft=50.0, e2e=60.0)  # both bounds broken: TTFT comes first
    assert set(r.values()) == {Reason.TTFT}
    r = reasons(engine(TINY).catalog, region="manila", ttft=1000.0, e2e=7000.0)  # 300 tokens at 40/s: 7.5 s decode
    assert set(r.values()) == {Reason.E2E}


def test_cut_cables_make_sites_unreachable():
    eng = engine(TINY)
    eng.set_links(["cable-a", "cable-b"], up=False)
    assert set(reasons(eng.catalog).values()) == {Reason.UNREACHABLE}


def test_latency_grows_with_load_and_cost_with_the_hour():
    cat = engine(TINY).catalog
    mt = cat.by_model["llm-70b"]
    a = arrays(cat)
    idle = estimate(cat, mt, a, 3, np.zeros(len(cat.pools)))
    busy = estimate(cat, mt, a, 3, cat.pool_capacity * 0.8)
    assert np.all(busy.ttft_ms > idle.ttft_ms) and np.allclose(busy.rtt_ms, idle.rtt_ms)
    peak = estimate(cat, mt, a, 11, np.zeros(len(cat.pools)))  # Guangdong peak band at 11:00
    guangdong = [k for k in range(len(mt)) if cat.sites[mt.site[k]] in ("shaoguan", "shantou")]
    assert np.all(peak.cost_cny[0, guangdong] > idle.cost_cny[0, guangdong])


@pytest.mark.parametrize("ttft,e2e", [(900.0, np.inf), (np.inf, 12000.0), (700.0, 11000.0)])
def test_ceiling_is_the_load_at_which_the_slo_is_just_met(ttft, e2e):
    cat = engine(TINY).catalog
    mt = cat.by_model["llm-70b"]
    a = arrays(cat, inp=6000.0, ttft=ttft, e2e=e2e)
    idle = estimate(cat, mt, a, 3, np.zeros(len(cat.pools)))
    theta, binding = ceilings(cat, mt, idle, a.ttft_slo, a.e2e_slo)
    for k in range(len(mt)):
        q = mt.pool[k]
        assert 0 < theta[0, k] < cat.pool_count[q]
        for load, meets in ((theta[0, k], True), (theta[0, k] + 1e-3 * cat.pool_count[q], False)):
            used = np.zeros(len(cat.pools))
            used[q] = load
            e = estimate(cat, mt, a, 3, used)
            assert bool(e.ttft_ms[0, k] <= ttft and e.e2e_ms[0, k] <= e2e) is meets, (k, load)
        slack_ttft = ttft - idle.rtt_ms[0, k]
        slack_e2e = e2e - idle.decode_ms[0] - idle.rtt_ms[0, k]
        assert binding[0, k] == (Reason.TTFT if slack_ttft <= slack_e2e else Reason.E2E)


def test_ceiling_is_minus_infinity_when_even_an_idle_pool_is_too_slow():
    cat = engine(TINY).catalog
    mt = cat.by_model["llm-70b"]
    a = arrays(cat, inp=60000.0, ttft=300.0)
    e = estimate(cat, mt, a, 3, np.zeros(len(cat.pools)))
    theta, _ = ceilings(cat, mt, e, a.ttft_slo, a.e2e_slo)
    assert np.all(np.isneginf(theta)) and np.all(e.reason == Reason.TTFT)


def test_pair_mode_equals_the_full_matrix_on_the_chosen_targets():
    cat = engine(TINY).catalog
    mt = cat.by_model["llm-70b"]
    rng = np.random.default_rng(3)
    n = 9
    a = BatchArrays(rng.integers(0, len(cat.regions), n), rng.uniform(10, 8000, n), rng.uniform(1, 900, n),
                    rng.integers(1, 30, n).astype(float), rng.uniform(200, 2000, n), np.full(n, np.inf),
                    ["public"] * (n - 2) + ["offshore-processing"] * 2)
    used = cat.pool_capacity * rng.uniform(0, 0.9, len(cat.pools))
    full = estimate(cat, mt, a, 17, used)
    k = rng.integers(0, len(mt), n)
    pairs = estimate(cat, mt, a, 17, used, targets=k)
    for name in ("rtt_ms", "ttft_ms", "e2e_ms", "reason", "cost_cny", "kwh", "g_co2", "load", "prefill_ms"):
        assert np.array_equal(getattr(pairs, name)[:, 0], getattr(full, name)[np.arange(n), k]), name


@pytest.mark.parametrize("percentile", [50.0, 95.0, 99.9])
def test_ttft_is_the_queue_s_percentile_at_the_pool_s_utilization(percentile):
    """`estimate` reads the percentile's wait from the queue's tables at the grid point at or above the pool's
    utilization: never below the M/M/c formula, and at most one grid step (1/GRID of the pool) above it."""
    cat = engine(TINY).catalog
    mt = cat.by_model["llm-70b"]
    a = replace(arrays(cat, inp=4000.0), percentile=percentile)
    for frac in (0.0, 0.3, 0.7, 0.85, 0.95, 0.99):
        used = cat.pool_count * frac
        e = estimate(cat, mt, a, 3, used)
        wait = e.ttft_ms[0] - e.rtt_ms[0] - e.prefill_ms[0]
        u = used[mt.pool] / cat.pool_count[mt.pool]
        exact = queueing.wait_ms(e.prefill_ms[0], mt.servers, u, percentile)
        step = queueing.wait_ms(e.prefill_ms[0], mt.servers, np.minimum(u + 1.0 / queueing.GRID, 1.0), percentile)
        assert (wait >= exact - 1e-9).all() and (wait <= step + 1e-9).all(), frac
        mean = mean_ttft_ms(cat, mt, e, used)[0] - e.rtt_ms[0] - e.prefill_ms[0]
        exact_mean = queueing.mean_wait_ms(e.prefill_ms[0], mt.servers, u)
        assert (mean >= exact_mean - 1e-9).all()
        assert (mean <= queueing.mean_wait_ms(e.prefill_ms[0], mt.servers,
                                              np.minimum(u + 1.0 / queueing.GRID, 1.0)) + 1e-9).all()


def test_a_higher_percentile_has_a_lower_ceiling_and_the_pool_is_many_servers():
    cat = engine(TINY).catalog
    mt = cat.by_model["llm-70b"]
    assert mt.servers.tolist() == (cat.pool_count[mt.pool] // 8).astype(int).tolist()  # prefill on 8 accelerators
    tops = []
    for p in (50.0, 90.0, 95.0, 99.0, 99.9):
        a = replace(arrays(cat, inp=6000.0, ttft=700.0), percentile=p)
        e = estimate(cat, mt, a, 3, np.zeros(len(cat.pools)))
        tops.append(ceilings(cat, mt, e, a.ttft_slo, a.e2e_slo)[0][0])
    tops = np.array(tops)
    assert (np.diff(tops, axis=0) <= 0).all() and (tops[0] > tops[-1]).all()


def test_within_slo_is_at_least_the_percentile_up_to_the_ceiling():
    """The share of requests within the SLO (the simulator's attainment) with the pool filled to a pair's
    ceiling is at least the SLO's percentile, and falls below it once the pool is well past the ceiling."""
    cat = engine(TINY).catalog
    mt = cat.by_model["llm-70b"]
    for p in (90.0, 99.0):
        a = replace(arrays(cat, inp=6000.0, ttft=700.0), percentile=p)
        idle = estimate(cat, mt, a, 3, np.zeros(len(cat.pools)))
        top, _ = ceilings(cat, mt, idle, a.ttft_slo, a.e2e_slo)
        for k in range(len(mt)):
            used = np.zeros(len(cat.pools))
            used[mt.pool[k]] = top[0, k]
            assert within_slo(cat, mt, idle, used, a.ttft_slo, a.e2e_slo)[0, k] >= p / 100 - 1e-9
            used[mt.pool[k]] = top[0, k] + 0.05 * cat.pool_count[mt.pool[k]]
            assert within_slo(cat, mt, idle, used, a.ttft_slo, a.e2e_slo)[0, k] < p / 100


def test_pair_mode_judges_each_batch_at_its_own_percentile():
    cat = engine(TINY).catalog
    mt = cat.by_model["llm-70b"]
    rng = np.random.default_rng(4)
    n = 12
    a = BatchArrays(rng.integers(0, len(cat.regions), n), rng.uniform(10, 8000, n), rng.uniform(1, 900, n),
                    rng.integers(1, 30, n).astype(float), rng.uniform(200, 2000, n), np.full(n, np.inf),
                    ["public"] * n, percentile=rng.choice([50.0, 95.0, 99.9], n))
    used = cat.pool_capacity * rng.uniform(0.5, 0.95, len(cat.pools))
    full = estimate(cat, mt, a, 17, used)
    k = rng.integers(0, len(mt), n)
    pairs = estimate(cat, mt, a, 17, used, targets=k)
    assert np.array_equal(pairs.ttft_ms[:, 0], full.ttft_ms[np.arange(n), k])
    for i in range(n):  # each row as a batch of its own, at its own percentile
        one = estimate(cat, mt, replace(arrays(cat), region=a.region[i:i + 1], input_tokens=a.input_tokens[i:i + 1],
                                        output_tokens=a.output_tokens[i:i + 1], requests=a.requests[i:i + 1],
                                        ttft_slo=a.ttft_slo[i:i + 1], percentile=a.percentile[i]), 17, used)
        assert np.array_equal(one.ttft_ms[0], full.ttft_ms[i])
