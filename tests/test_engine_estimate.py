"""Filter and score: the first failing check per target, the ceiling (inverse of the queueing model), pair mode."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.engine.estimate import BatchArrays, ceilings, estimate
from scheduler.engine.request import Reason
from test_engine_support import TINY, engine, shrink


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
