"""TopologyService: what is being served (with live pool usage) and a stream of reload results."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc

from scheduler.service import convert
from scheduler.service.errors import ServiceError, abort, translated
from scheduler.service.state import Event, Kind, ReloadOutcome, TopologyState
from scheduler.v1 import topology_pb2, topology_pb2_grpc

WAKE_S = 1.0  # how often an idle watch checks that its client is still there
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


class TopologyServicer(topology_pb2_grpc.TopologyServiceServicer):
    def __init__(self, state: TopologyState, max_watchers: int):
        self.state = state
        self._watchers = threading.BoundedSemaphore(max_watchers)
        self._max_watchers = max_watchers

    def info(self) -> topology_pb2.TopologyInfo:
        """The served snapshot, with pool and cable usage from the live ledger."""
        engine = self.state.engine
        cat = engine.catalog  # once: one consistent snapshot for the whole answer
        topo = cat.topology
        pool_used, cable_used = engine.usage(cat)
        pools_by_site: dict[str, list[topology_pb2.PoolInfo]] = {}
        for i, p in enumerate(cat.pools):
            pools_by_site.setdefault(p.site, []).append(topology_pb2.PoolInfo(
                key=p.key, accelerator=p.accelerator, count=p.count, capacity=p.capacity, used=float(pool_used[i])))
        down = cat.network.down_cables()
        return topology_pb2.TopologyInfo(
            version=cat.version, path=self.state.path, name=topo.name, description=topo.description,
            loaded_at=convert.timestamp(self.state.loaded_at(cat.version)),
            sites=[topology_pb2.SiteInfo(id=s.id, name=s.name, province=s.province, status=s.status.value,
                                         pools=pools_by_site.get(s.id, [])) for s in topo.sites],
            regions=[topology_pb2.RegionInfo(id=r.id, name=r.name, country=r.country, ttft_ms=r.slo.ttft_ms,
                                             e2e_ms=r.slo.e2e_ms) for r in topo.regions],
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
        # Each open watch holds a server thread; cap them so watchers can never starve placements.
        if not self._watchers.acquire(blocking=False):
            abort(context, ServiceError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                        f"watch: at most {self._max_watchers} open watches", "watch"))
        try:
            context.add_callback(self.state.wake)
            seq, last = self.state.cursor()
            yield topology_pb2.TopologyEvent(kind=topology_pb2.TopologyEvent.KIND_CURRENT,
                                             topology_version=last.serving_version, reload=outcome_to_pb(last))
            while context.is_active():
                events = self.state.wait(seq, WAKE_S)
                if events is None:
                    return  # the server is stopping: end the stream cleanly
                for e in events:
                    seq = e.seq
                    yield event_to_pb(e)
        finally:
            self._watchers.release()


def event_to_pb(e: Event) -> topology_pb2.TopologyEvent:
    return topology_pb2.TopologyEvent(kind=KIND_TO_PB[e.kind], topology_version=e.outcome.serving_version,
                                      reload=outcome_to_pb(e.outcome))
