"""OperatorService: the state-changing calls (operator role only): cut or repair links, reload the topology now.

Every call is logged (logger `scheduler.operator`, WARNING: these change what is served) with the name of the
token that made it, what it asked for and how it ended, refusals included.
"""

from __future__ import annotations

import logging

import grpc

from scheduler.engine.request import MAX_ID_CHARS, MAX_NAME_CHARS, quote, too_long
from scheduler.service import holds
from scheduler.service.errors import ServiceError, invalid, translated
from scheduler.service.placement import FORWARDED_KEY, Peers
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
    def __init__(self, state: TopologyState, watcher: FileWatcher, peers: Peers | None = None):
        self.state = state
        self.watcher = watcher
        self.peers = peers

    def _others(self, method: str, request: object, context: grpc.ServicerContext) -> tuple[list, list[str]]:
        """Cluster mode: the same call on every other replica (not when this call was itself passed on)."""
        metadata = context.invocation_metadata() or ()
        if self.peers is None or any(k == FORWARDED_KEY for k, _ in metadata):
            return [], []
        return self.peers.fan_out(method, request, metadata)

    @staticmethod
    def _filters(owner: str, pool: str) -> None:
        if (message := too_long(owner, MAX_NAME_CHARS)) is not None:
            raise invalid("owner", message)
        if (message := too_long(pool, MAX_ID_CHARS)) is not None:
            raise invalid("pool", message)

    @translated(_version)
    def ListHolds(self, request: operator_pb2.ListHoldsRequest,
                  context: grpc.ServicerContext) -> operator_pb2.ListHoldsResponse:
        self._filters(request.owner, request.pool)
        limit = request.limit or holds.DEFAULT_LIMIT
        if limit > holds.MAX_LIMIT:
            raise invalid("limit", f"at most {holds.MAX_LIMIT}, got {limit}")
        name = self.peers.name if self.peers is not None else ""
        mine = holds.list_holds(self.state.engine.ledger, request.owner, request.pool, limit, name)
        answers, unreachable = self._others("ListHolds", request, context)
        out = holds.merge([mine, *answers], limit) if answers else mine
        out.topology_version = self.state.version
        del out.unreachable[:]
        out.unreachable.extend(unreachable)
        return out

    @translated(_version)
    def ReleaseHolds(self, request: operator_pb2.ReleaseHoldsRequest,
                     context: grpc.ServicerContext) -> operator_pb2.ReleaseHoldsResponse:
        self._filters(request.owner, request.pool)
        if not (request.ids or request.owner or request.pool):
            raise invalid("ids", "give ids, an owner or a pool (releasing every hold takes an explicit filter)")
        released = holds.release_holds(self.state.engine.ledger, list(request.ids), request.owner, request.pool)
        answers, unreachable = self._others("ReleaseHolds", request, context)
        released += sum(a.released for a in answers)
        log.warning("%d holds released by %s (ids %d, owner %s, pool %s)", released, actor(context),
                    len(request.ids), quote(request.owner), quote(request.pool),
                    extra={"principal": actor(context), "peer": _peer(context), "action": "release-holds",
                           "released": released})
        return operator_pb2.ReleaseHoldsResponse(topology_version=self.state.version, released=released,
                                                 unreachable=unreachable)

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
