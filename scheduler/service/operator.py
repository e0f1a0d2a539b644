"""OperatorService: the state-changing calls (operator role only): cut or repair links, reload the topology now."""

from __future__ import annotations

import logging

import grpc

from scheduler.service.errors import invalid, translated
from scheduler.service.reload import FileWatcher
from scheduler.service.state import TopologyState, known_links
from scheduler.service.topology import outcome_to_pb
from scheduler.v1 import operator_pb2, operator_pb2_grpc

log = logging.getLogger("scheduler.operator")
MAX_IDS = 1000


def _version(servicer: OperatorServicer) -> str:
    return servicer.state.version


class OperatorServicer(operator_pb2_grpc.OperatorServiceServicer):
    def __init__(self, state: TopologyState, watcher: FileWatcher):
        self.state = state
        self.watcher = watcher

    @translated(_version)
    def SetLinkStatus(self, request: operator_pb2.SetLinkStatusRequest,
                      context: grpc.ServicerContext) -> operator_pb2.SetLinkStatusResponse:
        ids = list(request.ids)
        if not ids:
            raise invalid("ids", "give at least one cable, segment or link id")
        if len(ids) > MAX_IDS:
            raise invalid("ids", f"at most {MAX_IDS} per call, got {len(ids)}")
        known = known_links(self.state.engine.catalog)
        for i, x in enumerate(ids):
            if x not in known:
                raise invalid(f"ids[{i}]", f"unknown cable or link {x[:200]!r}")
        try:
            cat = self.state.set_links(ids, request.up)
        except KeyError as e:  # a reload between our check and the change removed the id
            raise invalid("ids", str(e.args[0] if e.args else e)) from None
        who = getattr(context, "principal", None)
        log.warning("links %s %s by %s", ", ".join(ids), "repaired" if request.up else "cut",
                    who.name if who else "(no token store)",
                    extra={"links": ",".join(ids), "up": request.up, "principal": who.name if who else ""})
        return operator_pb2.SetLinkStatusResponse(
            topology_version=cat.version, down_cables=sorted(cat.network.down_cables()),
            overrides=[operator_pb2.LinkOverride(id=k, up=v) for k, v in self.state.link_overrides()])

    @translated(_version)
    def ReloadTopology(self, request: operator_pb2.ReloadTopologyRequest,
                       context: grpc.ServicerContext) -> operator_pb2.ReloadTopologyResponse:
        outcome = self.watcher.reload_now()
        return operator_pb2.ReloadTopologyResponse(topology_version=self.state.version,
                                                   result=outcome_to_pb(outcome))
