"""OperatorService: the state-changing calls (operator role only): cut or repair links, reload the topology now.

Every call is logged (logger `scheduler.operator`, WARNING: these change what is served) with the name of the
token that made it, what it asked for and how it ended, refusals included.
"""

from __future__ import annotations

import logging

import grpc

from scheduler.engine.request import MAX_ID_CHARS, quote, too_long
from scheduler.service.errors import ServiceError, invalid, translated
from scheduler.service.reload import FileWatcher
from scheduler.service.state import TopologyState, known_links, unbuilt
from scheduler.service.topology import outcome_to_pb
from scheduler.v1 import operator_pb2, operator_pb2_grpc

log = logging.getLogger("scheduler.operator")
MAX_IDS = 1000
NO_TOKENS = "(no token store)"  # who made a call on a server that checks no tokens


def _version(servicer: OperatorServicer) -> str:
    return servicer.state.version


def actor(context: grpc.ServicerContext) -> str:
    """The name of the token a call came with (the gate sets the principal), for the audit log."""
    principal = getattr(context, "principal", None)
    return principal.name if principal is not None else NO_TOKENS


def _peer(context: grpc.ServicerContext) -> str:
    try:
        return context.peer()
    except Exception:  # a stand-in context in tests
        return ""


class OperatorServicer(operator_pb2_grpc.OperatorServiceServicer):
    def __init__(self, state: TopologyState, watcher: FileWatcher):
        self.state = state
        self.watcher = watcher

    @translated(_version)
    def SetLinkStatus(self, request: operator_pb2.SetLinkStatusRequest,
                      context: grpc.ServicerContext) -> operator_pb2.SetLinkStatusResponse:
        action = "repair" if request.up else "cut"
        who = actor(context)
        shown = ", ".join(quote(x) for x in request.ids[:10]) + (
            f" and {len(request.ids) - 10} more" if len(request.ids) > 10 else "")
        try:
            response = self._set_link_status(request)
        except ServiceError as e:
            log.warning("%s refused to %s %s: %s", who, action, shown or "(no ids)", e.message,
                        extra={"principal": who, "peer": _peer(context), "action": action, "links": shown,
                               "up": request.up, "code": e.code.name})
            raise
        log.warning("links %s %s by %s", shown, "repaired" if request.up else "cut", who,
                    extra={"principal": who, "peer": _peer(context), "action": action,
                           "links": ",".join(request.ids), "up": request.up,
                           "version": response.topology_version})
        return response

    def _set_link_status(self, request: operator_pb2.SetLinkStatusRequest) -> operator_pb2.SetLinkStatusResponse:
        ids = list(request.ids)
        if not ids:
            raise invalid("ids", "give at least one cable, segment or link id")
        if len(ids) > MAX_IDS:
            raise invalid("ids", f"at most {MAX_IDS} per call, got {len(ids)}")
        for i, x in enumerate(ids):
            if (message := too_long(x, MAX_ID_CHARS)) is not None:
                raise invalid(f"ids[{i}]", message)
        catalog = self.state.engine.catalog
        known = known_links(catalog)
        for i, x in enumerate(ids):
            if x not in known:
                raise invalid(f"ids[{i}]", f"unknown cable or link {quote(x)}")
        if request.up:
            refused = unbuilt(catalog)
            for i, x in enumerate(ids):
                if x in refused:  # a known id: as short as the topology's ids, named whole
                    raise ServiceError(grpc.StatusCode.FAILED_PRECONDITION,
                                       f"ids[{i}]: cannot bring up {x!r}: {refused[x]}; change its status in "
                                       f"the topology file once it is built", f"ids[{i}]")
        try:
            cat = self.state.set_links(ids, request.up)
        except KeyError:  # a reload between our check and the change removed an id
            gone = known_links(self.state.engine.catalog)
            i, x = next(((i, x) for i, x in enumerate(ids) if x not in gone), (0, ids[0]))
            raise invalid(f"ids[{i}]", f"unknown cable or link {quote(x)} (the topology was just reloaded)") \
                from None
        return operator_pb2.SetLinkStatusResponse(
            topology_version=cat.version, down_cables=sorted(cat.network.down_cables()),
            overrides=[operator_pb2.LinkOverride(id=k, up=v) for k, v in self.state.link_overrides()])

    @translated(_version)
    def ReloadTopology(self, request: operator_pb2.ReloadTopologyRequest,
                       context: grpc.ServicerContext) -> operator_pb2.ReloadTopologyResponse:
        outcome = self.watcher.reload_now()
        log.warning("topology reload by %s: %s", actor(context),
                    f"serving {outcome.serving_version}" if outcome.ok
                    else f"refused ({len(outcome.problems)} problems), still serving {outcome.serving_version}",
                    extra={"principal": actor(context), "peer": _peer(context), "action": "reload",
                           "ok": outcome.ok, "version": outcome.serving_version})
        return operator_pb2.ReloadTopologyResponse(topology_version=self.state.version,
                                                   result=outcome_to_pb(outcome))
