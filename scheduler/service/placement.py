"""PlacementService: proto in, engine call, proto out, status code on failure. No placement logic here."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc

from scheduler.engine.catalog import CABLE_PREFIX
from scheduler.engine.core import Engine
from scheduler.engine.fleet import POLICIES
from scheduler.engine.ledger import QuotaExceeded
from scheduler.service import convert
from scheduler.engine.place import Decision
from scheduler.engine.request import MAX_NAME_CHARS, QUOTE_CHARS, Batch, Reason, quote, too_long
from scheduler.service.errors import (MAX_DECISION_BYTES, ServiceError, check_deadline, invalid, remaining,
                                      translated, unplaced)
from scheduler.service.metrics import Metrics
from scheduler.service.security import OPERATE
from scheduler.service.state import TopologyState
from scheduler.v1 import placement_pb2, placement_pb2_grpc, types_pb2

MAX_BATCHES = 10_000  # per PlaceBatch call: bounds one call's memory and solver time
MAX_DEMAND_CELLS = 10_000
MAX_RELEASE = 100_000
FORWARDED_KEY = "scheduler-forwarded-by"  # metadata on a call one replica passes to another: never passed on again
DEFAULT_TIME_LIMIT_S = 2.0  # the engine's default solver budget
# Of the client's remaining deadline, what the solver may use; the rest pays for the work around the solve
# (building the problem, reserving, encoding and sending the answer: about 60 us per batch on a 2-core machine).
DEADLINE_SHARE = 0.8
OVERHEAD_S_PER_BATCH = 6e-5
MIN_SOLVE_S = 0.005
# gRPC clients refuse trailers over 8 KiB by default: the unplaced decision in the error trailer keeps to this
# (base64 on the wire: 4 KiB; a decision on the shipped topologies is under 1 KiB).
MAX_TRAILER_DECISION_BYTES = MAX_DECISION_BYTES
# Cluster mode: a placement this replica's share has room for, refused only by its budget of new holds, waits for
# the claim that renews the budget (one goes out within EARLY_PUBLISH_S plus an etcd write), at most this long
# each time (and half the caller's remaining deadline), this many times, before it is passed on.
BUDGET_WAIT_S = 0.25
BUDGET_WAITS = 3


def _version(servicer: PlacementServicer) -> str:
    return servicer.state.version


@dataclass
class PlacedAgain:
    """Batches of a PlaceBatch placed after waiting for a renewed budget: their ids, and their places in the call."""

    ids: list[int]
    placed: set[int]


class PeerUnavailable(Exception):
    """The replica holding some ids did not answer."""


class Peers(Protocol):
    """Cluster mode: which replica issued an id, and Release passed on to it (scheduler/cluster/peers.py)."""

    name: str

    def owner_of(self, reservation_id: int) -> str | None:
        """The replica that issued the id, if not this one (None: this replica's, or issued by no replica)."""

    def forward_release(self, replica: str, ids: list[int], metadata: Sequence[tuple[str, str]]) -> int:
        """Release on `replica` with the caller's credentials; how many were live (PeerUnavailable)."""

    def fan_out(self, method: str, request: object, metadata: Sequence[tuple[str, str]]) -> tuple[list, list[str]]:
        """Call OperatorService.`method` on every other live replica: (answers, replicas that did not answer)."""

    def by_room(self, keys: Sequence[str]) -> list[str]:
        """The other live replicas, the one with the most room left in its share on all of `keys` first."""

    def forward_place(self, replica: str, request: placement_pb2.PlaceRequest,
                      metadata: Sequence[tuple[str, str]], timeout: float | None) -> placement_pb2.PlaceResponse:
        """Place on `replica` with the caller's credentials (its refusal as grpc.RpcError; PeerUnavailable)."""

    def forward_place_batch(self, replica: str, request: placement_pb2.PlaceBatchRequest,
                            metadata: Sequence[tuple[str, str]],
                            timeout: float | None) -> placement_pb2.PlaceBatchResponse:
        """PlaceBatch on `replica`, likewise."""


def _owner(context: grpc.ServicerContext) -> str:
    principal = getattr(context, "principal", None)
    return principal.name if principal is not None else ""


def _quota(context: grpc.ServicerContext) -> float | None:
    principal = getattr(context, "principal", None)
    return principal.quota if principal is not None else None


def _forwarded(context: grpc.ServicerContext) -> bool:
    return any(k == FORWARDED_KEY for k, _ in context.invocation_metadata() or ())


def _placed_elsewhere(response: placement_pb2.PlaceBatchResponse, i: int, d: types_pb2.Decision) -> None:
    """Batch i of a PlaceBatch, refused by the joint solve, was placed after all (by a peer, or here once the
    budget was renewed): its decision and the totals."""
    convert.replace_decision(response, i, d)
    response.placed += 1
    response.cost_cny += d.cost_cny


def quota_error(e: QuotaExceeded, version: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"quota: {e}", "quota", version)


def _may_release_any(context: grpc.ServicerContext) -> bool:
    principal = getattr(context, "principal", None)
    return principal is not None and OPERATE in principal.permissions


class PlacementServicer(placement_pb2_grpc.PlacementServiceServicer):
    def __init__(self, state: TopologyState, max_batches: int = MAX_BATCHES, metrics: Metrics | None = None,
                 max_response_bytes: int | None = None, peers: Peers | None = None):
        self.state = state
        self.max_batches = max_batches
        self.metrics = metrics
        self.max_response_bytes = max_response_bytes
        self.peers = peers
        self.refused = 0  # placements refused for capacity (cluster mode reads it as demand it could not meet)
        self._wanted: dict[str, float] = {}  # cluster mode: accelerators refused per pool while the fleet had room
        self._wanted_lock = threading.Lock()
        self.on_wanted: Callable[[], None] | None = None  # cluster mode: told when a refusal is tallied as wanted

    @property
    def engine(self) -> Engine:
        return self.state.engine

    def _give_back(self, context: grpc.ServicerContext, reservation_ids: Sequence[int], what: str) -> None:
        """A client that has gone (deadline passed or cancelled) will not use what we reserved for it."""
        left = remaining(context)
        expired = left is not None and left <= 0
        if expired or not context.is_active():
            self.engine.release(reservation_ids)
            if expired:
                raise ServiceError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                   f"deadline: exceeded while {what}; nothing was reserved", "deadline")
            raise ServiceError(grpc.StatusCode.CANCELLED, f"call cancelled while {what}; nothing was reserved")

    @translated(_version)
    def Place(self, request: placement_pb2.PlaceRequest, context: grpc.ServicerContext) -> placement_pb2.PlaceResponse:
        if not request.HasField("batch"):
            raise invalid("batch", "required")
        check_deadline(context, "before placing")
        reserve = not request.dry_run
        batch, hour, owner, quota = convert.batch_from_pb(request.batch), convert.hour_of(request), \
            _owner(context), _quota(context)
        try:
            d = self.engine.place(batch, hour=hour, reserve=reserve, owner=owner, quota=quota)
            for _ in range(BUDGET_WAITS if reserve else 0):
                if d.placed or d.reason is not Reason.CAPACITY or not self._budget_renewed([batch], d.hour,
                                                                                           context):
                    break
                d = self.engine.place(batch, hour=hour, owner=owner, quota=quota)
        except QuotaExceeded as e:
            raise quota_error(e, self.state.version) from None
        if not d.placed:
            if d.reason is Reason.CAPACITY:
                self.refused += 1
            if reserve and (passed_on := self._pass_on(request, d, context)) is not None:
                return passed_on  # counted by the replica that placed it
        if self.metrics is not None:
            self.metrics.decided_one("Place", d.reason)
        if not d.placed:
            raise unplaced(d.reason, d.message, d.topology_version, trailer_decision(convert.decision_to_pb(d)))
        if reserve and not d.reservation_ids:
            # The engine gave up reserving after repeated races with concurrent callers for the last capacity.
            raise ServiceError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               "batch: capacity kept changing under concurrent placements; retry", "batch",
                               d.topology_version)
        self._give_back(context, d.reservation_ids, "placing")
        response = placement_pb2.PlaceResponse(topology_version=d.topology_version, hour=d.hour)
        convert.fill_decision(response.decision, d)
        return response

    def _fleet_room(self, batch: Batch, hour: int | None) -> Decision | None:
        """Cluster mode: where a batch this replica refused would go at the fleet-wide holds (None: nowhere, or
        not in cluster mode). Placed means the refusal was for want of a share, not of capacity: the pool's
        accelerators are tallied as wanted, for the leader to move share here (`take_wanted`)."""
        fleet_used = self.state.fleet_used
        if self.peers is None or fleet_used is None:
            return None
        d = self.engine.decide_at(batch, fleet_used(), hour)
        if not d.placed:
            return None
        with self._wanted_lock:
            self._wanted[d.pool] = self._wanted.get(d.pool, 0.0) + d.load
        if self.on_wanted is not None:
            self.on_wanted()
        return d

    def _budget_short(self, batch: Batch, hour: int | None) -> int | None:
        """Cluster mode: where this replica would have placed a batch it refused, were it not for its budget of
        new holds (its share had room): the ledger makes the next budget fit it, and a claim goes out soon. The
        ledger's ticket to wait for that claim, or None (the budget is not what refused it)."""
        if self.peers is None or self.state.fleet_used is None:
            return None
        ledger, keys = self.engine.ledger, self.engine.catalog.ledger_keys
        d = self.engine.decide_at(batch, dict(zip(keys, ledger.shared_load(keys))), hour)
        if not d.placed:
            return None
        tickets = [t for key, amount, *_ in self.engine.holds_of(d) if (t := ledger.needed(key, amount)) is not None]
        if not tickets:
            return None
        if self.metrics is not None:
            self.metrics.cluster_budget_short.inc()
        return min(tickets)

    def _budget_renewed(self, batches: Sequence[Batch], hour: int | None, context: grpc.ServicerContext) -> bool:
        """Cluster mode: whether any of `batches`, refused for capacity, was refused only by this replica's budget
        of new holds and a claim has renewed the budget since (waited for: BUDGET_WAIT_S at most, half the
        caller's remaining time at most). True: placing them again may succeed."""
        tickets = [t for b in batches if (t := self._budget_short(b, hour)) is not None]
        if not tickets:
            return False
        left = remaining(context)
        wait = BUDGET_WAIT_S if left is None else min(BUDGET_WAIT_S, left / 2)
        return wait > 0 and self.engine.ledger.wait_budget(min(tickets), wait)

    def take_wanted(self) -> dict[str, float]:
        """Accelerators per pool this replica's share could not hold while the fleet had room, since last asked."""
        with self._wanted_lock:
            wanted, self._wanted = self._wanted, {}
        return wanted

    def _pass_on(self, request: placement_pb2.PlaceRequest, refused: Decision,
                 context: grpc.ServicerContext) -> placement_pb2.PlaceResponse | None:
        """Cluster mode: a Place this replica refused, though some load would let it through, is passed on to the
        other replicas, the one with the most room left in its share first (as last published: room comes and
        goes faster than replicas publish it, so each is asked). The first to place it answers; if none does, and
        the fleet had room at every replica's holds as last published, the refusal is counted as stranded."""
        if self.peers is None or self.state.fleet_used is None:
            return None  # not in cluster mode
        batch, hour = refused.batch, refused.hour
        anywhere = self.engine.decide_at(batch, {}, hour)
        if not anywhere.placed:
            return None  # no site meets its SLO even on an empty fleet: no replica can help
        if _forwarded(context):
            return None  # the replica that passed it on goes on, and counts it
        fleet = self._fleet_room(batch, hour)
        d = fleet or anywhere
        keys = [d.pool] + [CABLE_PREFIX + c for c in (d.route.cables if d.route is not None else ())]
        metadata, left = context.invocation_metadata() or (), remaining(context)
        for replica in self.peers.by_room(keys):
            try:
                answer = self.peers.forward_place(replica, request, metadata, left)
            except PeerUnavailable:
                outcome = "unavailable"
            except grpc.RpcError:
                outcome = "refused"
            else:
                outcome = "placed"
            if self.metrics is not None:
                self.metrics.cluster_passed_on.labels(outcome).inc()
            if outcome == "placed":
                return answer
            left = remaining(context)
            if left is not None and left <= 0:
                break
        if fleet is not None and self.metrics is not None:
            self.metrics.cluster_stranded.labels("Place").inc()
        return None

    @translated(_version)
    def PlaceBatch(self, request: placement_pb2.PlaceBatchRequest,
                   context: grpc.ServicerContext) -> placement_pb2.PlaceBatchResponse:
        n = len(request.batches)
        if n == 0:
            raise invalid("batches", "give at least one batch")
        if n > self.max_batches:
            raise invalid("batches", f"at most {self.max_batches} batches per call, got {n}")
        limit = request.time_limit_ms / 1000 if request.time_limit_ms else DEFAULT_TIME_LIMIT_S
        left = remaining(context)
        if left is not None:
            budget = left * DEADLINE_SHARE - n * OVERHEAD_S_PER_BATCH
            if budget < MIN_SOLVE_S:
                raise ServiceError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                   f"deadline: {left * 1000:.0f} ms left is too little to place {n} batches",
                                   "deadline")
            limit = min(limit, budget)
        from_pb = convert.batch_from_pb
        batches = [from_pb(b) for b in request.batches]
        try:
            result = self.engine.place_many(batches, hour=convert.hour_of(request), time_limit_s=limit,
                                            reserve=not request.dry_run, owner=_owner(context),
                                            quota=_quota(context))
        except QuotaExceeded as e:
            raise quota_error(e, self.state.version) from None
        # Answers are written from the engine's column-wise table: no Decision object per batch on the way.
        table = result.table
        held = table.reservation_ids.tolist()
        if self.metrics is not None:
            self.metrics.decided("PlaceBatch", table.reason)
        self.refused += table.reason.count(Reason.CAPACITY)
        self._give_back(context, held, "placing the batches")
        s = result.solution
        response = placement_pb2.PlaceBatchResponse(
            topology_version=result.topology_version, hour=result.hour, placed=result.placed,
            solver_status=s.status, method=s.method, cost_cny=s.cost, gap=result.gap, solve_seconds=s.seconds,
        )
        if request.compact:
            convert.fill_columns_from_table(response.columns, response.routes, table)
        else:
            convert.add_decisions_from_table(response.decisions, table)
        passed_on: dict[str, list[int]] = {}
        if not request.dry_run and result.placed < n:
            again = self._place_after_budget(response, batches, table.reason, result.hour, context)
            if again.ids:
                held += again.ids
                self._give_back(context, held, "placing the batches")
            refused = [i for i, reason in enumerate(table.reason) if reason is not Reason.OK and i not in again.placed]
            passed_on = self._pass_on_batches(request, response, [batches[i] for i in refused], refused,
                                              result.hour, context)
        if self.max_response_bytes is not None and (size := response.ByteSize()) > self.max_response_bytes:
            # grpc would fail the send after we reserved; give the capacity back and say why instead.
            self.engine.release(held)
            self._release_passed_on(passed_on, context)
            raise ServiceError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"batches: the answer would be {size} bytes, over the server's "
                               f"{self.max_response_bytes}-byte message limit; nothing was reserved (send fewer "
                               f"batches per call)", "batches", result.topology_version)
        return response

    def _place_after_budget(self, response: placement_pb2.PlaceBatchResponse, batches: list[Batch],
                            reasons: Sequence[Reason], hour: int, context: grpc.ServicerContext) -> PlacedAgain:
        """Cluster mode: a PlaceBatch's batches refused only by this replica's budget of new holds wait for the
        claim that renews it and are placed again one by one, taking their places in `response`."""
        todo = [i for i, reason in enumerate(reasons) if reason is Reason.CAPACITY]
        out = PlacedAgain([], set())
        owner, quota = _owner(context), _quota(context)
        for _ in range(BUDGET_WAITS if todo else 0):
            if not self._budget_renewed([batches[i] for i in todo], hour, context):
                break
            still = []
            for i in todo:
                try:
                    d = self.engine.place(batches[i], hour=hour, owner=owner, quota=quota)
                except QuotaExceeded:
                    return out
                if d.placed and d.reservation_ids:
                    answer = types_pb2.Decision()
                    convert.fill_decision(answer, d)
                    _placed_elsewhere(response, i, answer)
                    out.ids.extend(d.reservation_ids)
                    out.placed.add(i)
                    self.refused -= 1
                elif d.reason is Reason.CAPACITY:
                    still.append(i)
            todo = still
        return out

    def _pass_on_batches(self, request: placement_pb2.PlaceBatchRequest, response: placement_pb2.PlaceBatchResponse,
                         batches: list[Batch], where: list[int], hour: int,
                         context: grpc.ServicerContext) -> dict[str, list[int]]:
        """Cluster mode: `_pass_on` for the batches of a PlaceBatch this replica refused (`where`: their places in
        the call): passed on together, to one replica after another, the one with the most room first; those
        placed take their places in `response`. Returns the ids placed elsewhere, per replica."""
        if self.peers is None or self.state.fleet_used is None:
            return {}
        todo = [(i, b) for i, b in zip(where, batches) if self.engine.decide_at(b, {}, hour).placed]
        if _forwarded(context):
            return {}
        fleet = {i: d for i, b in todo if (d := self._fleet_room(b, hour)) is not None}
        keys = sorted({d.pool for d in fleet.values()})
        passed: dict[str, list[int]] = {}
        metadata = context.invocation_metadata() or ()
        for replica in (self.peers.by_room(keys) if todo else []):
            ask = placement_pb2.PlaceBatchRequest(batches=[request.batches[i] for i, _ in todo],
                                                  time_limit_ms=request.time_limit_ms)
            if request.HasField("hour"):
                ask.hour = request.hour
            try:
                answer = self.peers.forward_place_batch(replica, ask, metadata, remaining(context))
            except PeerUnavailable:
                outcome, answer = "unavailable", None
            except grpc.RpcError:
                outcome, answer = "refused", None
            placed = [] if answer is None else [(i, d) for (i, _), d in zip(todo, answer.decisions) if d.placed]
            for i, d in placed:
                _placed_elsewhere(response, i, d)
                passed.setdefault(replica, []).extend(d.reservation_ids)
            if self.metrics is not None:
                if placed:
                    self.metrics.cluster_passed_on.labels("placed").inc(len(placed))
                if len(placed) < len(todo):
                    self.metrics.cluster_passed_on.labels(outcome if answer is None else "refused").inc(
                        len(todo) - len(placed))
            done = {i for i, _ in placed}
            todo = [(i, b) for i, b in todo if i not in done]
            left = remaining(context)
            if not todo or (left is not None and left <= 0):
                break
        stranded = sum(1 for i, _ in todo if i in fleet)
        if stranded and self.metrics is not None:
            self.metrics.cluster_stranded.labels("PlaceBatch").inc(stranded)
        return passed

    def _release_passed_on(self, passed: dict[str, list[int]], context: grpc.ServicerContext) -> None:
        for replica, ids in passed.items():
            try:
                self.peers.forward_release(replica, ids, context.invocation_metadata() or ())
            except (PeerUnavailable, grpc.RpcError):
                pass  # they end by themselves

    @translated(_version)
    def GetPlan(self, request: placement_pb2.GetPlanRequest,
                context: grpc.ServicerContext) -> placement_pb2.GetPlanResponse:
        n = len(request.demand)
        if n == 0:
            raise invalid("demand", "give at least one demand cell")
        if n > MAX_DEMAND_CELLS:
            raise invalid("demand", f"at most {MAX_DEMAND_CELLS} demand cells per call, got {n}")
        policy = request.policy or POLICIES[0]
        if (message := too_long(policy, MAX_NAME_CHARS)) is not None:
            raise invalid("policy", message)
        if policy not in POLICIES:
            raise invalid("policy", f"unknown policy {quote(policy)}; choose from {', '.join(POLICIES)}")
        check_deadline(context, "before planning")
        plan = self.engine.plan([convert.cell_from_pb(c) for c in request.demand], hour=convert.hour_of(request),
                                policy=policy, use_ledger=request.use_ledger)
        check_deadline(context, "while planning")
        return convert.plan_to_pb(plan)

    @translated(_version)
    def Release(self, request: placement_pb2.ReleaseRequest,
                context: grpc.ServicerContext) -> placement_pb2.ReleaseResponse:
        if len(request.reservation_ids) > MAX_RELEASE:
            raise invalid("reservation_ids", f"at most {MAX_RELEASE} per call, got {len(request.reservation_ids)}")
        owner = None if _may_release_any(context) else _owner(context)
        ids = list(request.reservation_ids)
        elsewhere: dict[str, list[int]] = {}
        unknown: list[int] = []  # issued by a replica etcd could not name just now
        if self.peers is not None and not _forwarded(context):
            here = []
            for rid in ids:
                try:
                    replica = self.peers.owner_of(rid)
                except PeerUnavailable:
                    unknown.append(rid)
                    continue
                (here if replica is None else elsewhere.setdefault(replica, [])).append(rid)
            ids = here
        released = self.engine.ledger.release_many(ids, owner)
        missed: list[tuple[str, list[int]]] = []
        for replica, rids in elsewhere.items():
            try:
                released += self.peers.forward_release(replica, rids, context.invocation_metadata() or ())
            except PeerUnavailable:
                missed.append((replica, rids))
        if unknown:
            more = len(unknown) - 1
            raise ServiceError(grpc.StatusCode.UNAVAILABLE,
                               f"reservation_ids: id {unknown[0]}{f' and {more} more' if more else ''} came from "
                               f"another replica, and etcd did not answer which (its holds end by themselves; "
                               f"retry to release them early); {released} other hold(s) released",
                               "reservation_ids")
        if missed:
            replica, rids = missed[0]
            more = sum(len(r) for _, r in missed) - 1
            raise ServiceError(grpc.StatusCode.NOT_FOUND,
                               f"reservation_ids: id {rids[0]}{f' and {more} more' if more else ''} "
                               f"belong{'' if more else 's'} to replica {replica!r}, which did not answer "
                               f"(its holds end by themselves; retry to release them early); {released} other "
                               f"hold(s) released", "reservation_ids")
        return placement_pb2.ReleaseResponse(topology_version=self.state.version, released=released)


def trailer_decision(d: types_pb2.Decision) -> bytes:
    """The decision serialized for the error trailer, dropping the last rejections if it would not fit (and, should
    it still not, cutting its batch id and message to a prefix: the API's length limits make that moot)."""
    while d.ByteSize() > MAX_TRAILER_DECISION_BYTES and (d.rejections or d.alternatives):
        del (d.rejections or d.alternatives)[-1]
    if d.ByteSize() > MAX_TRAILER_DECISION_BYTES:
        d.batch_id = d.batch_id[:QUOTE_CHARS]
        d.message = d.message[:MAX_TRAILER_DECISION_BYTES // 8]
        del d.reservation_ids[:]
    return d.SerializeToString()
