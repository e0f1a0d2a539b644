"""TopologyService: what is being served (with live pool usage) and a stream of reload results.

Watch streams are bounded so that no client can hoard them: at most `max_watchers` open in all and at most
`max_per_client` per client (the token's name, or the peer's address when the server checks no tokens); past
either, RESOURCE_EXHAUSTED naming the limit. A stream is ended cleanly (OK, trailer `scheduler-watch-end:
max-age`) after about `max_age_s`, so slots turn over and a client that went away without closing its stream
gives its slot back; the project's client (`Client.watch_topology`) then opens a new one by itself and carries on
from the version being served. A stream ended because the server stops carries `scheduler-watch-end: shutdown`.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Iterator
from urllib.parse import unquote

import grpc

from scheduler.service import convert
from scheduler.service.errors import ServiceError, abort, translated
from scheduler.service.state import Event, Kind, ReloadOutcome, TopologyState
from scheduler.v1 import topology_pb2, topology_pb2_grpc

WAKE_S = 1.0  # how often an idle watch checks that its client is still there
DEFAULT_MAX_STREAM_AGE_S = 600.0
AGE_JITTER = 0.1  # a stream ends between (1 - AGE_JITTER) and 1 times its max age: reconnects do not all coincide
WATCH_END_KEY = "scheduler-watch-end"  # trailer: why the server ended a watch stream cleanly
END_MAX_AGE = "max-age"  # the stream reached its max age: open a new one (the project's client does)
END_SHUTDOWN = "shutdown"  # the server is stopping
KIND_TO_PB = {
    Kind.CURRENT: topology_pb2.TopologyEvent.KIND_CURRENT,
    Kind.APPLIED: topology_pb2.TopologyEvent.KIND_APPLIED,
    Kind.REFUSED: topology_pb2.TopologyEvent.KIND_REFUSED,
}


def outcome_to_pb(o: ReloadOutcome) -> topology_pb2.ReloadResult:
    return topology_pb2.ReloadResult(ok=o.ok, path=o.path, version=o.version,
                                     errors=[convert.problem_to_pb(p) for p in o.problems],
                                     at=convert.timestamp(o.at), serving_version=o.serving_version)


def _version(servicer: TopologyServicer) -> str:
    return servicer.state.version


def peer_host(peer: str) -> str:
    """`ipv4:10.0.0.7:53122` -> `10.0.0.7`, `ipv6:[::1]:53122` (or its %5B..%5D form) -> `::1`; anything else whole.
    The port is dropped: a client opening many connections is still one client."""
    kind, _, rest = unquote(peer).partition(":")
    if kind in ("ipv4", "ipv6") and ":" in rest:
        return rest.rsplit(":", 1)[0].strip("[]")
    return peer


def client_of(context: grpc.ServicerContext) -> str:
    """Who a watch counts against: the token's name when the server checks tokens (the gate sets the principal),
    else the peer's address."""
    principal = getattr(context, "principal", None)
    if principal is not None:
        return f"token {principal.name}"
    try:
        return f"peer {peer_host(context.peer())}"
    except Exception:  # a stand-in context in tests
        return "peer unknown"


class TopologyServicer(topology_pb2_grpc.TopologyServiceServicer):
    def __init__(self, state: TopologyState, max_watchers: int, max_per_client: int | None = None,
                 max_age_s: float = DEFAULT_MAX_STREAM_AGE_S, metrics=None):
        self.state = state
        self._max_watchers = max_watchers
        self._max_per_client = max_per_client or max_watchers
        self.max_age_s = max_age_s
        self._metrics = metrics
        self._lock = threading.Lock()
        self._open = 0
        self._by_client: dict[str, int] = {}

    def open_watches(self) -> dict[str, int]:
        """Open watch streams per client."""
        with self._lock:
            return dict(self._by_client)

    def _admit(self, client: str) -> str | None:
        """Take a slot for `client`; or the refusal (None: admitted)."""
        with self._lock:
            if self._open >= self._max_watchers:
                limit, refusal = "total", f"watch: at most {self._max_watchers} open watches"
            elif self._by_client.get(client, 0) >= self._max_per_client:
                limit, refusal = "per_client", (f"watch: at most {self._max_per_client} open watches per client "
                                                f"({client}); close one, or retry later")
            else:
                self._open += 1
                self._by_client[client] = self._by_client.get(client, 0) + 1
                limit = refusal = None
        if self._metrics is not None:
            if limit is None:
                self._metrics.watch_streams.inc()
            else:
                self._metrics.watch_refusals.labels(limit).inc()
        return refusal

    def _leave(self, client: str) -> None:
        with self._lock:
            self._open -= 1
            left = self._by_client[client] - 1
            if left:
                self._by_client[client] = left
            else:
                del self._by_client[client]
        if self._metrics is not None:
            self._metrics.watch_streams.dec()

    def info(self) -> topology_pb2.TopologyInfo:
        """The served snapshot, with pool and cable usage from the live ledger."""
        engine = self.state.engine
        cat = engine.catalog  # once: one consistent snapshot for the whole answer
        topo = cat.topology
        here = engine.ledger.own_used()  # this process's holds (engine.usage adds the others' shares in a cluster)
        fleet = self.state.fleet_used() if self.state.fleet_used is not None else here
        shares = engine.ledger.shares()
        pool_used = [fleet.get(p.key, 0.0) for p in cat.pools]
        cable_used = [fleet.get(k, 0.0) for k in cat.ledger_keys[len(cat.pools):]]
        ceiling = engine.ledger.promised_ceilings(cat.ledger_keys)  # this replica's and (cluster) the others'
        ceiling_here = engine.ledger.own_ceilings()
        pools_by_site: dict[str, list[topology_pb2.PoolInfo]] = {}
        for i, p in enumerate(cat.pools):
            info = topology_pb2.PoolInfo(key=p.key, accelerator=p.accelerator, count=p.count, capacity=p.capacity,
                                         used=float(pool_used[i]), used_here=here.get(p.key, 0.0))
            if shares is not None:
                info.share = shares.get(p.key, 0.0)
            if math.isfinite(ceiling[i]):
                info.ceiling = float(ceiling[i])
            if p.key in ceiling_here:
                info.ceiling_here = ceiling_here[p.key]
            pools_by_site.setdefault(p.site, []).append(info)
        down = cat.network.down_cables()
        return topology_pb2.TopologyInfo(
            version=cat.version, path=self.state.path, name=topo.name, description=topo.description,
            loaded_at=convert.timestamp(self.state.loaded_at(cat.version)),
            sites=[topology_pb2.SiteInfo(id=s.id, name=s.name, province=s.province, status=s.status.value,
                                         pools=pools_by_site.get(s.id, [])) for s in topo.sites],
            regions=[topology_pb2.RegionInfo(id=r.id, name=r.name, country=r.country, ttft_ms=r.slo.ttft_ms,
                                             e2e_ms=r.slo.e2e_ms, slo_percentile=r.slo.percentile)
                     for r in topo.regions],
            models=[m.id for m in topo.models], data_classes=[d.id for d in topo.data_classes],
            cables=[topology_pb2.CableInfo(id=c.id, name=c.name, up=c.id not in down,
                                           capacity_gbps=c.capacity_gbps, used_gbps=float(cable_used[i]))
                    for i, c in enumerate(topo.cables)],
        )

    @translated(_version)
    def GetTopology(self, request: topology_pb2.GetTopologyRequest,
                    context: grpc.ServicerContext) -> topology_pb2.GetTopologyResponse:
        info = self.info()
        return topology_pb2.GetTopologyResponse(topology_version=info.version, topology=info,
                                                last_reload=outcome_to_pb(self.state.last))

    def WatchTopology(self, request: topology_pb2.WatchTopologyRequest,
                      context: grpc.ServicerContext) -> Iterator[topology_pb2.TopologyEvent]:
        # Each open watch holds a server thread; cap them (in all and per client) so watchers can never starve
        # placements, nor one client take every slot.
        client = client_of(context)
        refusal = self._admit(client)
        if refusal is not None:
            abort(context, ServiceError(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal, "watch"))
        try:
            context.add_callback(self.state.wake)
            ends = time.monotonic() + self.max_age_s * random.uniform(1 - AGE_JITTER, 1)
            seq, last = self.state.cursor()
            yield topology_pb2.TopologyEvent(kind=topology_pb2.TopologyEvent.KIND_CURRENT,
                                             topology_version=last.serving_version, reload=outcome_to_pb(last))
            while context.is_active():
                left = ends - time.monotonic()
                if left <= 0:  # end cleanly; the client opens a new stream (and so gets a slot like anyone else)
                    context.set_trailing_metadata(((WATCH_END_KEY, END_MAX_AGE),))
                    return
                events = self.state.wait(seq, min(WAKE_S, left))
                if events is None:  # the server is stopping: end the stream cleanly
                    context.set_trailing_metadata(((WATCH_END_KEY, END_SHUTDOWN),))
                    return
                for e in events:
                    seq = e.seq
                    yield event_to_pb(e)
        finally:
            self._leave(client)


def event_to_pb(e: Event) -> topology_pb2.TopologyEvent:
    return topology_pb2.TopologyEvent(kind=KIND_TO_PB[e.kind], topology_version=e.outcome.serving_version,
                                      reload=outcome_to_pb(e.outcome))
