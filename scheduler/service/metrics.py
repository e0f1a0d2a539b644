"""Prometheus metrics of one control plane, on their own registry (several planes can live in one process) and
their own HTTP port (`scheduler serve --metrics-port`).

Counted as calls happen: RPC latency per method, failed calls per method and status code, placements per outcome,
calls turned away because the server was full, topology reload attempts, topology file reads that failed (I/O
errors, not edits), open and refused WatchTopology streams. Read from the live state at each scrape:
per-site utilization, per-pool held accelerators, per-cable load (Gbps held in the ledger), cable and site status,
and the topology version being served.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from scheduler.engine.request import Reason
from scheduler.service.state import ReloadOutcome, TopologyState

# Place is sub-millisecond in the engine and a few ms over gRPC; PlaceBatch and GetPlan take up to seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
PLACED = "placed"


def outcome_label(reason: Reason | None) -> str:
    """`placed`, or the reason nothing was placed in lower case (ttft, capacity, cable, ...)."""
    return PLACED if reason is None or reason is Reason.OK else reason.name.lower()


class Metrics:
    def __init__(self, state: TopologyState):
        self.registry = CollectorRegistry()
        r = self.registry
        self.rpc_seconds = Histogram("scheduler_rpc_duration_seconds", "Time to answer a call, by RPC method",
                                     ["method"], buckets=LATENCY_BUCKETS, registry=r)
        self.rpc_errors = Counter("scheduler_rpc_errors", "Calls that ended with a status other than OK",
                                  ["method", "code"], registry=r)
        self.placements = Counter("scheduler_placements", "Batches decided, by RPC and outcome (placed, or the "
                                  "reason nothing was: ttft, e2e, capacity, cable, ...)", ["rpc", "outcome"],
                                  registry=r)
        self.overloaded = Counter("scheduler_overload_rejections", "Calls turned away at once because the server "
                                  "was already running its maximum of concurrent calls", registry=r)
        self.inflight = Gauge("scheduler_inflight_calls", "Calls being worked on now", registry=r)
        self.reloads = Counter("scheduler_topology_reloads", "Topology reload attempts by result (applied, "
                               "refused)", ["result"], registry=r)
        self.reload_failures = Counter("scheduler_topology_reload_failures", "Topology edits refused (the "
                                       "previous version kept serving)", registry=r)
        self.watch_errors = Counter("scheduler_topology_watch_errors", "Topology file reads that failed with an I/O "
                                    "error (e.g. too many open files, file missing): nothing was refused, the "
                                    "served version is kept and the read is retried", registry=r)
        self.watch_streams = Gauge("scheduler_watch_streams", "WatchTopology streams open now", registry=r)
        self.watch_refusals = Counter("scheduler_watch_refusals", "WatchTopology streams refused, by the limit "
                                      "reached (total, per_client)", ["limit"], registry=r)
        # Cluster mode only (no series without --cluster, so the cluster alerts stay silent in embedded mode).
        self.cluster_lease_ok = Gauge("scheduler_cluster_lease_ok", "1 while this replica's etcd lease is renewed "
                                      "and it places within its share; 0 when it stopped placing for want of one",
                                      registry=None)
        self.cluster_leader = Gauge("scheduler_cluster_leader", "1 while this replica leads the cluster (rebalances "
                                    "the shares)", registry=None)
        self.cluster_stranded = Counter("scheduler_cluster_stranded_placements", "Batches this replica refused while "
                                        "the fleet, at every replica's holds as last published, had room for them "
                                        "(its share was short), after passing a Place on to the replica with the "
                                        "most room", ["rpc"], registry=None)
        self.cluster_passed_on = Counter("scheduler_cluster_passed_on_placements", "Places this replica's share "
                                         "could not hold, passed on to another replica, by outcome (placed, "
                                         "refused, unavailable)", ["outcome"], registry=None)
        self.cluster_budget_short = Counter("scheduler_cluster_budget_short_placements", "Batches this replica "
                                            "refused though its share had room, for want of budget of new holds "
                                            "until its next claim (it publishes one at once, with a larger "
                                            "budget)", registry=None)
        self.cluster_claims = Counter("scheduler_cluster_claims", "Claims this replica published in etcd, by why "
                                      "(period, early: a budget of new holds was half used or short)", ["why"],
                                      registry=None)
        self.cluster_dead_peers = Counter("scheduler_cluster_dead_peers", "Leases of other replicas this replica "
                                          "revoked: a call to one failed and its port refused connections (dead "
                                          "before its TTL ran out)", registry=None)
        self.watch_refusals.labels("total")
        self.watch_refusals.labels("per_client")
        self._placement_counters: dict[tuple[str, Reason | None], Callable[[float], None]] = {}
        self.reloads.labels("applied")
        self.reloads.labels("refused")
        r.register(StateCollector(state))
        state.listeners.append(self.on_reload)
        self._server = None
        self.port = 0

    def on_reload(self, outcome: ReloadOutcome) -> None:
        self.reloads.labels("applied" if outcome.ok else "refused").inc()
        if not outcome.ok:
            self.reload_failures.inc()

    def cluster_mode(self) -> None:
        """Export the cluster series (a replica started with --cluster)."""
        for series in (self.cluster_lease_ok, self.cluster_leader, self.cluster_stranded, self.cluster_passed_on,
                       self.cluster_budget_short, self.cluster_claims, self.cluster_dead_peers):
            self.registry.register(series)
        for why in ("period", "early"):
            self.cluster_claims.labels(why)
        for rpc in ("Place", "PlaceBatch"):
            self.cluster_stranded.labels(rpc)
        for outcome in ("placed", "refused", "unavailable"):
            self.cluster_passed_on.labels(outcome)

    def on_watch_error(self, _error: OSError) -> None:
        self.watch_errors.inc()

    def decided(self, rpc: str, reasons: Iterable[Reason | None]) -> None:
        for reason, n in Tally(reasons).items():
            self.decided_one(rpc, reason, n)

    def decided_one(self, rpc: str, reason: Reason | None, n: int = 1) -> None:
        """`n` batches of one outcome; the labelled counter is looked up once per (rpc, reason), not per call."""
        inc = self._placement_counters.get((rpc, reason))
        if inc is None:
            inc = self._placement_counters[(rpc, reason)] = self.placements.labels(rpc, outcome_label(reason)).inc
        inc(n)

    def serve(self, host: str, port: int) -> int:
        """Expose /metrics over HTTP; returns the port (useful with 0)."""
        self._server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self.port = self._server.server_port
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class StateCollector(Collector):
    """Gauges read from the served snapshot and the ledger at scrape time (one consistent snapshot per scrape)."""

    def __init__(self, state: TopologyState):
        self.state = state

    def collect(self):
        engine = self.state.engine
        cat = engine.catalog
        topo = cat.topology
        pool_used, cable_used = engine.usage(cat)
        info = InfoMetricFamily("scheduler_topology", "The topology being served")
        info.add_metric([], {"version": cat.version, "path": self.state.path, "name": topo.name})
        yield info
        loaded = GaugeMetricFamily("scheduler_topology_loaded_timestamp_seconds",
                                   "When the served topology version was swapped in (unix seconds)")
        loaded.add_metric([], self.state.loaded_at(cat.version))
        yield loaded

        held = GaugeMetricFamily("scheduler_pool_used_accelerators", "Accelerators held by live placements",
                                 labels=["site", "pool"])
        cap = GaugeMetricFamily("scheduler_pool_capacity_accelerators", "Accelerators the ledger may fill",
                                labels=["site", "pool"])
        by_site: dict[str, list[float]] = {}
        for i, p in enumerate(cat.pools):
            used = float(pool_used[i])
            held.add_metric([p.site, p.key], used)
            cap.add_metric([p.site, p.key], float(p.capacity))
            acc = by_site.setdefault(p.site, [0.0, 0.0])
            acc[0] += used
            acc[1] += float(p.capacity)
        yield held
        yield cap
        util = GaugeMetricFamily("scheduler_site_utilization", "Share of a site's accelerators held (0..1)",
                                 labels=["site"])
        up = GaugeMetricFamily("scheduler_site_up", "1 when the site takes placements", labels=["site"])
        for s in topo.sites:
            used, total = by_site.get(s.id, (0.0, 0.0))
            util.add_metric([s.id], used / total if total > 0 else 0.0)
            up.add_metric([s.id], 1.0 if s.status.value == "up" else 0.0)
        yield util
        yield up

        load = GaugeMetricFamily("scheduler_cable_load_gbps", "Bandwidth held on a submarine cable by live "
                                 "placements", labels=["cable"])
        ccap = GaugeMetricFamily("scheduler_cable_capacity_gbps", "A cable's usable bandwidth", labels=["cable"])
        cup = GaugeMetricFamily("scheduler_cable_up", "1 when the cable carries traffic (not cut)", labels=["cable"])
        down = cat.network.down_cables()
        for i, c in enumerate(cat.cables):
            load.add_metric([c], float(cable_used[i]))
            ccap.add_metric([c], float(cat.cable_capacity_gbps[i]))
            cup.add_metric([c], 0.0 if c in down else 1.0)
        yield load
        yield ccap
        yield cup
