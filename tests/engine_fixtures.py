"""Helpers the engine tests share: small topologies, exhaustive search, and independent re-checks of placements.

The re-checks recompute everything from the topology through `estimate` at the pools' *final* loads (everything
placed in the test running at once), so they test what a user would see, not what the solver believed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from functools import cache

import numpy as np

from scheduler import synth
from scheduler.engine.solve import problem as joint
from scheduler.engine.solve import greedy, group_prices
from scheduler.engine.catalog import Catalog
from scheduler.engine.core import Engine
from scheduler.engine.estimate import BatchArrays, estimate
from scheduler.engine.ledger import Ledger
from scheduler.engine.place import Decision
from scheduler.engine.request import Batch, DemandCell, Reason
from scheduler.model.loader import load_topology
from scheduler.model.schema import Topology
from scheduler.sim.scenario import load_scenario
from scheduler.paths import DEFAULT_TOPOLOGY, SIMULATIONS_DIR, TOPOLOGY_DIR

TINY = load_topology(TOPOLOGY_DIR / "tiny.yaml").value


def shrink(topology: Topology, counts: dict[str, int] | None = None, cable_gbps: dict[str, float] | None = None,
           down: tuple[str, ...] = ()) -> Topology:
    """A copy with pool sizes, cable capacities or site status changed (validated again)."""
    data = topology.model_dump(mode="json")
    for site in data["sites"]:
        if counts and site["id"] in counts:
            for pool in site["pools"]:
                pool["count"] = counts[site["id"]]
        if site["id"] in down:
            site["status"] = "down"
    for cable in data["cables"]:
        if cable_gbps and cable["id"] in cable_gbps:
            cable["capacity_gbps"] = cable_gbps[cable["id"]]
    return Topology.model_validate(data)


def small_pools(topology: Topology, divisor: int) -> Topology:
    """A copy with every pool's count divided by `divisor`, kept a multiple of 8 and at least 8 (validated again).

    A pool queues as M/M/c with c = count // prefill parallelism servers; with hundreds of servers (the default
    topology) the percentile wait stays ~0 until the pool is nearly saturated, so SLO ceilings hardly ever bind below
    the capacity cap. With a few servers (divisor 64: 1-8 per llm-70b pool) they bind well below it, as the solvers'
    ceiling tests need."""
    data = topology.model_dump(mode="json")
    for site in data["sites"]:
        for pool in site["pools"]:
            pool["count"] = max(8, pool["count"] // divisor // 8 * 8)
    return Topology.model_validate(data)


SMALL_DIVISOR = 64  # the small fleet's pools: 1/64 of the default topology's


@cache
def small_fleet() -> Topology:
    """The default topology with every pool 1/64 as large (`small_pools`): 1-8 servers per llm-70b pool, 8-64 per
    llm-8b one, so the SLO ceilings of ordinary batches bind well below the capacity cap."""
    return small_pools(load_topology(DEFAULT_TOPOLOGY).value, SMALL_DIVISOR)


def small_fleet_batches(n: int, seed: int) -> list[Batch]:
    """synth.random_batches for the small fleet, the demand scaled with it: each batch's requests divided by
    SMALL_DIVISOR (at least one). 2,000 of them load it about as 6,000 unscaled ones loaded the default topology
    under the old M/M/1 ceilings (every batch that can go placed; ceilings cap several pools)."""
    return [replace(b, requests=max(1, b.requests // SMALL_DIVISOR))
            for b in synth.random_batches(small_fleet(), n, seed=seed)]


def contended(n: int, seed: int, hour: int = 14) -> joint.BatchProblem:
    """`n` small-fleet batches (`small_fleet_batches`) on the small fleet at `hour`, as a problem."""
    return problem(engine(small_fleet()), small_fleet_batches(n, seed), hour)


def binding_pairs(p: joint.BatchProblem) -> int:
    """How many feasible (batch, target) pairs have a ceiling below their pool's cap: the ceilings that bind."""
    return int(sum(((p.reason[m] == Reason.OK) & (p.ceiling[m] < p.pool_cap[p.cat.by_model[m].pool][None, :] - 1e-9))
                   .sum() for m in p.models))


def engine(topology: Topology, clock=None) -> Engine:
    return Engine.from_topology(topology, "test", ledger=Ledger(clock) if clock else None)


def random_batches(topology: Topology, n: int, seed: int, requests: tuple[int, int] = (1, 40),
                   ttft: tuple[float, float] | None = None, classes: tuple[str, ...] = ("public",)) -> list[Batch]:
    rng = np.random.default_rng(seed)
    regions = [r.id for r in topology.regions]
    models = [m.id for m in topology.models]
    out = []
    for i in range(n):
        out.append(Batch(
            regions[rng.integers(len(regions))], models[rng.integers(len(models))],
            int(rng.integers(50, 6000)), int(rng.integers(20, 1500)), int(rng.integers(*requests)),
            float(rng.uniform(*ttft)) if ttft else None, None, classes[rng.integers(len(classes))], id=f"b{i}"))
    return out


def problem(eng: Engine, batches: list[Batch], hour: int) -> joint.BatchProblem:
    cat = eng.catalog
    slos = [eng.check(b, cat) for b in batches]
    used, cable_used = eng.usage(cat)
    return joint.build(cat, batches, slos, hour, used, cable_used, eng.ceilings(cat))


@dataclass(frozen=True)
class Optimum:
    objective: float
    cost: float
    unplaced: int
    target: tuple[int, ...]


def exhaustive(p: joint.BatchProblem, penalty: float) -> Optimum:
    """Every assignment of every batch to one of its feasible targets or to nothing; the cheapest that keeps each
    pool under its cap and under the ceiling of every batch on it, and each cable under its room."""
    B, T = len(p.batches), p.n_targets
    cost = np.full((B, T), np.inf)
    load = np.zeros((B, T))
    theta = np.full((B, T), -np.inf)
    ok = np.zeros((B, T), bool)
    for m in p.models:
        rows, cols = p.rows[m], slice(p.offset[m], p.offset[m] + p.est[m].cost_cny.shape[1])
        cost[rows, cols] = p.est[m].cost_cny
        load[rows, cols] = p.est[m].load
        theta[rows, cols] = p.ceiling[m]
        ok[rows, cols] = p.reason[m] == Reason.OK
    options = [np.append(np.flatnonzero(ok[b]), -1) for b in range(B)]
    combos = np.array(list(itertools.product(*options)), dtype=np.int64).reshape(-1, B)
    N = len(combos)
    total = np.zeros(N)
    pool_load = np.tile(p.used.astype(float), (N, 1))
    gbps = p.gbps()
    cable_load = np.zeros((N, len(p.cable_free)))
    for b in range(B):
        t = combos[:, b]
        on = t >= 0
        total += np.where(on, cost[b, np.maximum(t, 0)], penalty * p.weight[b])
        np.add.at(pool_load, (np.flatnonzero(on), p.pool[t[on]]), load[b, t[on]])
        if len(p.cable_free):
            cross = p.cat.route_cables[p.region[b], p.site[np.maximum(t, 0)]] & on[:, None]
            cable_load += cross * gbps[b]
    fine = np.all(pool_load <= p.pool_cap[None, :] + 1e-9, axis=1)
    for b in range(B):
        t = combos[:, b]
        on = t >= 0
        here = pool_load[np.arange(N), p.pool[np.maximum(t, 0)]]
        fine &= ~on | (here <= theta[b, np.maximum(t, 0)] + 1e-9)
    if len(p.cable_free):
        fine &= np.all(cable_load <= p.cable_free[None, :] + 1e-12, axis=1)
    best = int(np.flatnonzero(fine)[np.argmin(total[fine])])
    chosen = combos[best]
    placed_cost = float(sum(cost[b, t] for b, t in enumerate(chosen) if t >= 0))
    return Optimum(float(total[best]), placed_cost, int((chosen < 0).sum()), tuple(int(x) for x in chosen))


def recheck(cat: Catalog, decisions: list[Decision], hour: int, base: np.ndarray | None = None,
            cut: set[str] = frozenset()) -> list[str]:
    """Everything wrong with a set of placed decisions once all of them run: SLOs re-estimated at the final pool
    loads, data classes, site status, pool capacity, cables (capacity and cuts). Empty when all is well."""
    problems = []
    pool_index = {pl.key: i for i, pl in enumerate(cat.pools)}
    load = np.zeros(len(cat.pools)) if base is None else base.copy()
    placed = [d for d in decisions if d.placed]
    for d in placed:
        load[pool_index[d.pool]] += d.load
    for i, pl in enumerate(cat.pools):
        if load[i] > pl.capacity + 1e-9:
            problems.append(f"pool {pl.key} holds {load[i]:.3f} > capacity {pl.capacity}")
    gbps = {}
    for d in placed:
        b = d.batch
        site = cat.topology.site(d.site)
        if site.status.value != "up":
            problems.append(f"{b.id}: placed on {d.site}, which is {site.status.value}")
        tags = set(cat.data_classes[b.data_class].allowed_tags)
        if tags and not tags & set(site.tags):
            problems.append(f"{b.id}: data class {b.data_class} not allowed on {d.site}")
        route = d.route or cat.route(b.region, d.site)
        if route is None:
            problems.append(f"{b.id}: no route from {b.region} to {d.site}")
            continue
        if set(route.cables) & set(cut):
            problems.append(f"{b.id}: route crosses cut cable(s) {set(route.cables) & set(cut)}")
        for c in route.cables:
            wire = (b.input_tokens + b.output_tokens) * b.requests
            gbps[c] = gbps.get(c, 0.0) + wire * cat.topology.settings.bytes_per_token * 8 / d.hold_s / 1e9
        mt = cat.by_model[b.model]
        k = next(k for k in range(len(mt)) if cat.pools[mt.pool[k]].key == d.pool)
        arrays = BatchArrays(np.array([cat.region_index[b.region]]), np.array([float(b.input_tokens)]),
                             np.array([float(b.output_tokens)]), np.array([float(b.requests)]),
                             np.array([d.slo.ttft_ms]), np.array([d.slo.e2e_ms]), [b.data_class],
                             percentile=d.slo.percentile)  # judged at the SLO's own percentile
        e = estimate(cat, mt, arrays, hour, load)
        if e.ttft_ms[0, k] > d.slo.ttft_ms or e.e2e_ms[0, k] > d.slo.e2e_ms:
            problems.append(f"{b.id}: at final load on {d.pool}, ttft {e.ttft_ms[0, k]:.1f} / e2e "
                            f"{e.e2e_ms[0, k]:.1f} ms over SLO {d.slo.ttft_ms} / {d.slo.e2e_ms}")
    for c, g in gbps.items():
        cap = cat.cable_capacity_gbps[cat.cables.index(c)]
        if g > cap + 1e-9:
            problems.append(f"cable {c} carries {g:.6f} > {cap} Gbps")
    return problems


def priced_instance(topology: Topology, batches: list[Batch], hour: int):
    """A small instance for the bounds' tests: the problem, its penalty, its exhaustive optimum, the large path's
    parts and the group LP's prices."""

    p = problem(engine(topology), batches, hour)
    penalty = joint.penalty_of(p)
    parts = greedy.parts_of(p)
    return p, penalty, exhaustive(p, penalty), parts, group_prices.price(p, parts, penalty)


def assert_feasible(p: joint.BatchProblem, target: np.ndarray) -> None:
    """From scratch: every pool within its capacity and under every placed batch's ceiling, every cable within its
    bandwidth."""
    load = p.used.astype(float).copy()
    floor = p.pool_cap.astype(float).copy()
    cable = np.zeros(len(p.cable_free))
    for m in p.models:
        t = target[p.rows[m]]
        r = np.flatnonzero(t >= 0)
        k = t[r] - p.offset[m]
        pool = p.cat.by_model[m].pool[k]
        np.add.at(load, pool, p.est[m].load[r, k])
        np.minimum.at(floor, pool, p.ceiling[m][r, k])
        crossing = p.crosses(p.rows[m][r], t[r])
        cable += (crossing * p.est[m].gbps[r][:, None]).sum(axis=0)
    assert (load <= floor + 1e-6).all()
    assert (cable <= np.maximum(p.cable_free, 0) + 1e-6).all()


def capacity(cat: Catalog, model: str, site: str | None = None) -> float:
    """Wire tokens/s (input + output) of a typical request (DemandCell's 2000/500) the model's pools could carry at
    their caps, if the model had them to itself (optionally only those at `site`)."""
    mt = cat.by_model[model]
    cell = DemandCell(cat.regions[0], model, 1.0)
    units = cat.pool_capacity[mt.pool] * mt.decode_tps
    if site is not None:
        units = units[np.array([cat.sites[s] == site for s in mt.site])]
    weight = cell.output_tokens + cell.input_tokens / mt.speedup
    return float(units.sum() * (cell.input_tokens + cell.output_tokens) / weight)


def baseline_mix(cat: Catalog, load: float) -> list[DemandCell]:
    """The baseline day's mix of cells (simulations/baseline-day.yaml, tokens per day as shares), scaled so that
    llm-70b demand is `load` x its capacity."""
    profiles = load_scenario(SIMULATIONS_DIR / "baseline-day.yaml").scenario.demand.profiles
    big = sum(p.tokens_per_day for p in profiles if p.model == "llm-70b")
    scale = load * capacity(cat, "llm-70b") / big
    return [DemandCell(p.region, p.model, p.tokens_per_day * scale, data_class=p.data_class) for p in profiles]


SMALL = shrink(TINY, counts={"zhongwei": 12, "shaoguan": 8, "shantou": 6})
NARROW = shrink(TINY, counts={"zhongwei": 40, "shaoguan": 40, "shantou": 40},
                cable_gbps={"cable-a": 0.004, "cable-b": 0.006})  # a few Mbps: the cables bind, not the pools


def small_instances():
    """Seeded small instances of the batch problem, small enough for exhaustive search: (name, topology,
    batches, hour)."""
    out = []
    for seed in range(8):
        out.append((f"tiny-{seed}", SMALL, random_batches(SMALL, 7, seed, requests=(3, 25), ttft=(250, 1500)),
                    (3, 11, 17, 22)[seed % 4]))
    for seed in range(3):
        out.append((f"cables-{seed}", NARROW, random_batches(NARROW, 6, 100 + seed, requests=(1, 30)), 3))
    for seed in range(4):
        topo = synth.generate(sites=3, regions=2, seed=seed)
        topo = shrink(topo, counts={s.id: 8 for s in topo.sites})
        out.append((f"synth-{seed}", topo, random_batches(topo, 6, seed, requests=(2, 20), ttft=(300, 2000),
                                                          classes=("public", "public", "offshore-processing")), 14))
    return out
