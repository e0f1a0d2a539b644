"""The topology flattened into arrays the engine scores in one vectorized pass.

A *target* is one accelerator pool at a site serving one model. Pools are the unit of capacity (models on one pool
share its accelerators); targets are the unit of choice. Everything here depends only on the topology and the
network state, so it is built once per topology version or cable event, never per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from scheduler import costs, queueing
from scheduler.engine import tolerances
from scheduler.engine.request import Reason
from scheduler.model.schema import Status, Topology
from scheduler.network import NetworkModel, Route
from scheduler.queueing import PoolQueues

CABLE_PREFIX = "cable:"  # the ledger keys cable bandwidth as CABLE_PREFIX + cable id, beside the pools' keys


@dataclass(frozen=True)
class ModelTargets:
    """Targets of one model; row i of every array is target i."""

    model: str
    speedup: float  # input tokens per output-equivalent token
    stream_tokens_per_s: float
    parallelism: int
    site: np.ndarray  # int: index into Catalog.sites
    pool: np.ndarray  # int: index into Catalog.pools
    decode_tps: np.ndarray  # output-equivalent tokens/s per accelerator
    prefill_tps: np.ndarray  # input tokens/s per accelerator
    kwh_per_mtok: np.ndarray
    cny_per_mtok: np.ndarray  # (targets, 24): energy at each local hour + amortization, transit excluded
    g_co2_per_mtok: np.ndarray
    green_share: np.ndarray
    servers: np.ndarray  # int: each target's pool as a queue: accelerators // parallelism (at least 1)
    queues: PoolQueues  # the targets' waiting-time tables

    def __len__(self) -> int:
        return len(self.site)


@dataclass(frozen=True)
class Pool:
    key: str  # "site/accelerator#j"
    site: str
    accelerator: str
    count: int
    capacity: float  # accelerators the ledger may fill: count x max_utilization


@dataclass(frozen=True)
class TargetsView:
    """Per-model gathers of the catalog's tables, so scoring indexes once instead of twice."""

    rtt_ms: np.ndarray  # (regions, targets)
    transit: np.ndarray  # (regions, targets) CNY per million wire tokens
    allowed: np.ndarray  # (data classes, targets) in Catalog.data_classes order
    site_up: np.ndarray  # (targets,)
    cables: np.ndarray  # (regions, targets, cables) the route crosses the cable


class Catalog:
    def __init__(self, topology: Topology, network: NetworkModel, version: str = ""):
        self.topology = topology
        self.network = network
        self.version = version
        self.sites = [s.id for s in topology.sites]
        self.site_index = {s: i for i, s in enumerate(self.sites)}
        self.regions = [r.id for r in topology.regions]
        self.region_index = {r: i for i, r in enumerate(self.regions)}
        self.data_classes = {d.id: d for d in topology.data_classes}
        self.models = {m.id: m for m in topology.models}
        self.data_class_index = {d: i for i, d in enumerate(self.data_classes)}
        self.site_up = np.array([s.status is Status.up for s in topology.sites])
        self.pools: list[Pool] = []
        self._pool_index: dict[str, int] = {}
        self._views: dict[str, TargetsView] = {}
        self._one: dict[str, OneBatchTables | None] = {}
        self._crossed: dict[tuple[str, int], list[tuple[int, ...]]] = {}
        self.by_model: dict[str, ModelTargets] = {m: self._targets(m) for m in self.models}

    def _targets(self, model_id: str) -> ModelTargets:
        topo, model = self.topology, self.models[model_id]
        accels = {a.id: a for a in topo.accelerators}
        tariffs = {t.id: t for t in topo.tariffs}
        rows: list[tuple] = []
        for si, site in enumerate(topo.sites):
            tariff = tariffs[site.tariff]
            prices = costs.hourly_prices(tariff)
            carbon = site.carbon_g_per_kwh if site.carbon_g_per_kwh is not None else tariff.carbon_g_per_kwh
            green = site.green_share if site.green_share is not None else tariff.green_share
            for j, pool in enumerate(site.pools):
                served = pool.models if pool.models is not None else [
                    m for m, mm in self.models.items() if pool.accelerator in mm.throughput or m in pool.throughput
                ]
                if model_id not in served:
                    continue
                tp = pool.throughput.get(model_id) or model.throughput[pool.accelerator]
                acc = accels[pool.accelerator]
                joules = costs.device_joules_per_token(acc.watts, tp.decode_tokens_per_s, model.joules_per_token)
                kwh = costs.kwh_per_mtok(joules, site.pue)
                cny = np.array([
                    costs.cny_per_mtok(kwh, p, acc.cny_per_hour, tp.decode_tokens_per_s) for p in prices
                ])
                rows.append((si, self._pool(site.id, j, pool.accelerator, pool.count), tp.decode_tokens_per_s,
                             tp.prefill_tokens_per_s, kwh, cny, costs.g_co2_per_mtok(kwh, carbon), green))
        cols = list(zip(*rows)) if rows else [()] * 8
        pool = np.array(cols[1], dtype=np.int64)
        servers = queueing.servers(np.array([self.pools[p].count for p in pool], dtype=np.int64),
                                   model.prefill_parallelism).astype(np.int64)
        return ModelTargets(
            model=model_id,
            speedup=costs.prefill_speedup(model),
            stream_tokens_per_s=model.stream_tokens_per_s,
            parallelism=model.prefill_parallelism,
            site=np.array(cols[0], dtype=np.int64),
            pool=pool,
            decode_tps=np.array(cols[2], dtype=float),
            prefill_tps=np.array(cols[3], dtype=float),
            kwh_per_mtok=np.array(cols[4], dtype=float),
            cny_per_mtok=np.array(cols[5], dtype=float).reshape(len(rows), costs.HOURS),
            g_co2_per_mtok=np.array(cols[6], dtype=float),
            green_share=np.array(cols[7], dtype=float),
            servers=servers,
            queues=PoolQueues(servers),
        )

    def _pool(self, site: str, j: int, accelerator: str, count: int) -> int:
        key = f"{site}/{accelerator}#{j}"
        if key not in self._pool_index:
            self._pool_index[key] = len(self.pools)
            self.pools.append(Pool(key, site, accelerator, count, count * self.topology.settings.max_utilization))
        return self._pool_index[key]

    def prepare(self) -> Catalog:
        """Route every region to every site and cut the per-model tables now, before the snapshot serves: otherwise
        the first placement after a topology load or a cable cut pays for it (0.4 s on 200 sites x 50 regions)."""
        for model in self.by_model:
            self.targets_view(model)
        return self

    def targets_view(self, model: str) -> TargetsView:
        """The region x site tables restricted to one model's targets, built once per snapshot and model."""
        view = self._views.get(model)
        if view is None:
            sites = self.by_model[model].site
            view = TargetsView(
                rtt_ms=np.ascontiguousarray(self.rtt_ms[:, sites]),
                transit=np.ascontiguousarray(self.transit_cny_per_mtok[:, sites]),
                allowed=np.stack([self.allowed[d][sites] for d in self.data_classes]),
                site_up=self.site_up[sites],
                cables=np.ascontiguousarray(self.route_cables[:, sites, :]),
            )
            self._views[model] = view  # a benign race: two threads may build the same view
        return view

    def crossed(self, model: str, region: int) -> list[tuple[int, ...]]:
        """Per target of `model`, the cables (indices into `cables`, ascending) its route from `region` crosses, as
        Python tuples: the single-batch path and the greedy check them one by one instead of masking a (C,) array
        per candidate. Built once per snapshot, model and region (a benign race: two threads may build the same)."""
        out = self._crossed.get((model, region))
        if out is None:
            cables = self.targets_view(model).cables[region]
            ks, cs = np.nonzero(cables)
            cuts = np.searchsorted(ks, np.arange(cables.shape[0] + 1)).tolist()
            cs = cs.tolist()
            out = self._crossed[(model, region)] = [tuple(cs[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
        return out

    def one_batch(self, model: str) -> OneBatchTables | None:
        """The model's tables for placing one batch (None when the single-batch path does not apply: a model with
        no targets, or two targets on one pool, which the vectorized path handles)."""
        try:
            return self._one[model]
        except KeyError:
            mt = self.by_model[model]
            # Plain floats raise where numpy would warn and go on: leave degenerate tables to the vectorized path.
            ok = (len(mt) > 0 and len(set(mt.pool.tolist())) == len(mt) and mt.speedup != 0
                  and mt.stream_tokens_per_s > 0 and bool(np.all(mt.prefill_tps * mt.parallelism > 0))
                  and bool(np.all(mt.decode_tps > 0)) and bool(np.all(self.pool_count[mt.pool] > 0)))
            tables = self._one[model] = OneBatchTables(self, mt) if ok else None
            return tables

    @cached_property
    def ledger_capacity_map(self) -> dict[str, float]:
        """`ledger_capacity` by ledger key (read-only: shared by every placement on this snapshot)."""
        return dict(zip(self.ledger_keys, self.ledger_capacity.tolist()))

    @cached_property
    def region_by_id(self) -> dict:
        return {r.id: r for r in self.topology.regions}

    @cached_property
    def pool_keys(self) -> list[str]:
        """The ledger's keys of the pools, in pool order (asked on every placement; pools are fixed per snapshot)."""
        return [p.key for p in self.pools]

    @cached_property
    def pool_capacity(self) -> np.ndarray:
        return np.array([p.capacity for p in self.pools], dtype=float)

    @cached_property
    def pool_count(self) -> np.ndarray:
        return np.array([p.count for p in self.pools], dtype=float)

    @cached_property
    def rtt_ms(self) -> np.ndarray:
        """(regions, sites) round trip over up links; inf where unreachable."""
        out = np.full((len(self.regions), len(self.sites)), np.inf)
        for (r, s), route in self.network.routes.items():
            out[self.region_index[r], self.site_index[s]] = route.rtt_ms
        return out

    @cached_property
    def transit_cny_per_mtok(self) -> np.ndarray:
        """(regions, sites) transit price of a million tokens' wire bytes along the route."""
        out = np.zeros((len(self.regions), len(self.sites)))
        bpt = self.topology.settings.bytes_per_token
        for (r, s), route in self.network.routes.items():
            out[self.region_index[r], self.site_index[s]] = costs.transit_cny_per_mtok(route.transit_cny_per_gb, bpt)
        return out

    @cached_property
    def allowed(self) -> dict[str, np.ndarray]:
        """data class -> bool per site."""
        out = {}
        for dc in self.topology.data_classes:
            tags = set(dc.allowed_tags)
            out[dc.id] = np.array([not tags or bool(tags & set(s.tags)) for s in self.topology.sites])
        return out

    def route(self, region: str, site: str) -> Route | None:
        return self.network.route(region, site)

    @cached_property
    def route_table(self) -> list[Route | None]:
        """The route of every (region index, site index), at region * len(sites) + site (None: unreachable)."""
        return [self.network.route(r, s) for r in self.regions for s in self.sites]

    @cached_property
    def route_cable_index(self) -> tuple[np.ndarray, np.ndarray]:
        """Per (region, site) as in `route_table`: how many cables the route crosses, and (padded with -1) their
        indices into `cables` in the route's own order (the order placements reserve them in)."""
        index = {c: i for i, c in enumerate(self.cables)}
        lists = [[index[c] for c in route.cables] if route is not None else [] for route in self.route_table]
        count = np.array([len(x) for x in lists], dtype=np.int64)
        out = np.full((len(lists), max(1, int(count.max(initial=0)))), -1, dtype=np.int64)
        for i, x in enumerate(lists):
            out[i, : len(x)] = x
        return count, out

    @cached_property
    def ledger_keys(self) -> list[str]:
        """The ledger's keys: every pool's, then every cable's, in snapshot order."""
        return self.pool_keys + [CABLE_PREFIX + c for c in self.cables]

    @cached_property
    def ledger_capacity(self) -> np.ndarray:
        """Capacity per `ledger_keys` entry: accelerators for pools, Gbps for cables (inf: unbounded)."""
        return np.concatenate([self.pool_capacity, self.cable_capacity_gbps]).astype(float)

    @cached_property
    def cables(self) -> list[str]:
        return [c.id for c in self.topology.cables]

    @cached_property
    def cable_capacity_gbps(self) -> np.ndarray:
        return np.array([c.capacity_gbps or np.inf for c in self.topology.cables], dtype=float)

    @cached_property
    def cable_limit(self) -> list[float]:
        """Per cable, the Gbps past which it counts as full (its capacity plus tolerances.GBPS)."""
        return (self.cable_capacity_gbps + tolerances.GBPS).tolist()

    @cached_property
    def route_cables(self) -> np.ndarray:
        """(regions, sites, cables) bool: the route from region to site crosses the cable."""
        index = {c: i for i, c in enumerate(self.cables)}
        out = np.zeros((len(self.regions), len(self.sites), len(self.cables)), dtype=bool)
        for (r, s), route in self.network.routes.items():
            for c in route.cables:
                out[self.region_index[r], self.site_index[s], index[c]] = True
        return out


class OneBatchTables:
    """One model's targets as Python lists, and its per-region / per-hour / per-data-class tables, for placing a
    single batch (`place.decide_one`) with a handful of Python float operations per target instead of dozens of
    tiny numpy calls. The values are the very floats the vectorized path computes from (each table below is the
    same numpy expression, converted with tolist), so both paths reach identical results. Built lazily, once per
    snapshot, model and region/hour (benign races: two threads may build the same entry)."""

    def __init__(self, cat: Catalog, mt: ModelTargets):
        self.cat = cat
        self.mt = mt
        self.n = len(mt)
        self.pool = mt.pool.tolist()
        self.site = mt.site.tolist()
        self.count = cat.pool_count[mt.pool].tolist()
        self.capacity = cat.pool_capacity[mt.pool].tolist()
        self.prefill = (mt.prefill_tps * mt.parallelism).tolist()
        self.decode_tps = mt.decode_tps.tolist()
        self.kwh = (mt.kwh_per_mtok / costs.MTOK).tolist()
        self.g_co2 = (mt.g_co2_per_mtok / costs.MTOK).tolist()
        self.pool_key = [cat.pools[p].key for p in self.pool]
        self.site_name = [cat.sites[s] for s in self.site]
        # Per site (in Catalog.sites order), its targets in target order.
        self.site_targets: list[list[int]] = [[] for _ in cat.sites]
        for t, s in enumerate(self.site):
            self.site_targets[s].append(t)
        self._regions: dict[int, tuple] = {}
        self._hours: dict[int, list[float]] = {}
        self._queues: dict[float, tuple[list[memoryview], list[memoryview]]] = {}
        self.mean_waits = [mt.queues.mean_column(t) for t in range(self.n)]  # per target, by queueing.grid_index

    def queues(self, percentile: float) -> tuple[list[memoryview], list[memoryview]]:
        """Per target, its queue's wait table and ceiling inverse table at the percentile (PoolQueues.column)."""
        out = self._queues.get(percentile)
        if out is None:
            columns = [self.mt.queues.column(t, percentile) for t in range(self.n)]
            out = self._queues[percentile] = ([w for w, _ in columns], [i for _, i in columns])
        return out

    def hour(self, h: int) -> list[float]:
        cny = self._hours.get(h)
        if cny is None:
            cny = self._hours[h] = self.mt.cny_per_mtok[:, h].tolist()
        return cny

    def region(self, r: int) -> tuple:
        """(rtt per target, per data class the static reason per target (SITE_DOWN > UNREACHABLE > DATA_CLASS >
        0), per data class the targets it lets through as (target, pool, rtt, pool count, pool capacity, prefill
        tokens/s, decode tokens/s, the cables its route crosses, transit CNY per million wire tokens), per target
        its route)."""
        out = self._regions.get(r)
        if out is None:
            cat, view = self.cat, self.cat.targets_view(self.mt.model)
            rtt = view.rtt_ms[r]
            static = []
            for d in range(view.allowed.shape[0]):
                reason = np.zeros(self.n, dtype=np.int8)
                reason[~view.allowed[d]] = int(Reason.DATA_CLASS)
                reason[~np.isfinite(rtt)] = int(Reason.UNREACHABLE)
                reason[~view.site_up] = int(Reason.SITE_DOWN)
                static.append(reason.tolist())
            cables = cat.crossed(self.mt.model, r)
            rtt, transit = rtt.tolist(), view.transit[r].tolist()
            rows = [[(t, self.pool[t], rtt[t], self.count[t], self.capacity[t], self.prefill[t], self.decode_tps[t],
                      cables[t], transit[t]) for t in range(self.n) if not reasons[t]] for reasons in static]
            routes = cat.route_table
            base = r * len(cat.sites)
            out = (rtt, static, rows, [routes[base + s] for s in self.site])
            self._regions[r] = out
        return out
