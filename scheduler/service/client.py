"""A small client for the control plane: typed calls over one channel, and helpers to read errors.

Security is the channel's: `token` is sent as `authorization: Bearer <token>` on every call; `ca` turns TLS on
(trusting that CA; `tls=True` alone trusts the system roots), and `cert`/`key` add a client certificate for mutual
TLS. Every call carries an `x-request-id` (the server logs it and returns it in the trailers).

`watch_topology` outlives the server's limit on a stream's age: when the server ends a watch at its max age, the
client opens a new one by itself and carries on from the version being served.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import grpc

from scheduler.engine.request import Batch, DemandCell
from scheduler.service import convert
from scheduler.service.errors import DECISION_KEY, FIELD_KEY, VERSION_KEY
from scheduler.service.security import ConfigError, channel_credentials
from scheduler.service.topology import END_MAX_AGE, WATCH_END_KEY
from scheduler.v1 import (operator_pb2, operator_pb2_grpc, placement_pb2, placement_pb2_grpc, topology_pb2,
                          topology_pb2_grpc, types_pb2)

DEFAULT_TARGET = "localhost:50051"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
TOKEN_ENV = "SCHEDULER_TOKEN"
REQUEST_ID_KEY = "x-request-id"
# Keepalive: ping a connection with calls in flight (a long watch stream) after 30 s of quiet, and give up on the
# server after 10 s without an answer; the server allows pings every 10 s (server.MIN_CLIENT_PING_INTERVAL_S).
KEEPALIVE_OPTIONS = (("grpc.keepalive_time_ms", 30_000), ("grpc.keepalive_timeout_ms", 10_000),
                     ("grpc.keepalive_permit_without_calls", 0), ("grpc.http2.max_pings_without_data", 0))
# A replica that restarts is found again within 2 s (gRPC's default backoff grows to 120 s: a router would keep
# away from a replica back up long after, and send its share of the calls to the others).
RECONNECT_OPTIONS = (("grpc.initial_reconnect_backoff_ms", 250), ("grpc.max_reconnect_backoff_ms", 2_000))


class _Metadata(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds the bearer token and a request id (unless the caller gave one) to every call."""

    def __init__(self, token: str | None):
        self._auth = (("authorization", f"Bearer {token}"),) if token else ()

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        md = list(details.metadata or ())
        if not any(k == REQUEST_ID_KEY for k, _ in md):
            md.append((REQUEST_ID_KEY, uuid.uuid4().hex[:16]))
        md.extend(self._auth)
        return details._replace(metadata=md) if hasattr(details, "_replace") else _CallDetails(details, md)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, d: grpc.ClientCallDetails, metadata: list):
        self.method, self.timeout, self.credentials = d.method, d.timeout, d.credentials
        self.wait_for_ready, self.compression = d.wait_for_ready, d.compression
        self.metadata = metadata


def read_token(token_file: str | Path | None = None) -> str | None:
    """The token from a file (first line), else from $SCHEDULER_TOKEN; None when neither is set."""
    if token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip().splitlines()
        except OSError as e:
            raise ConfigError(f"cannot read the token file {token_file}: {e.strerror}") from None
        if not token or not token[0].strip():
            raise ConfigError(f"{token_file}: empty token file")
        return token[0].strip()
    return os.environ.get(TOKEN_ENV) or None


def make_channel(target: str, tls: bool = False, ca: str | Path | None = None, cert: str | Path | None = None,
                 key: str | Path | None = None, options: Sequence[tuple[str, object]] = ()) -> grpc.Channel:
    given = {k for k, _ in options}
    opts = [*options, *((k, v) for k, v in (("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                                             ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                                             *KEEPALIVE_OPTIONS, *RECONNECT_OPTIONS) if k not in given)]
    if tls or ca or cert:
        return grpc.secure_channel(target, channel_credentials(ca, cert, key), options=opts)
    return grpc.insecure_channel(target, options=opts)


class Client:
    """Engine types or proto messages in, proto responses out; gRPC errors propagate as grpc.RpcError."""

    def __init__(self, target: str = DEFAULT_TARGET, timeout: float | None = 30.0, *, token: str | None = None,
                 tls: bool = False, ca: str | Path | None = None, cert: str | Path | None = None,
                 key: str | Path | None = None, options: Sequence[tuple[str, object]] = ()):
        self.target = target
        self.timeout = timeout
        self.raw_channel = make_channel(target, tls, ca, cert, key, options)
        self.channel = grpc.intercept_channel(self.raw_channel, _Metadata(token))
        self.placement = placement_pb2_grpc.PlacementServiceStub(self.channel)
        self.topology = topology_pb2_grpc.TopologyServiceStub(self.channel)
        self.operator = operator_pb2_grpc.OperatorServiceStub(self.channel)

    def wait_ready(self, timeout: float = 5.0) -> None:
        grpc.channel_ready_future(self.raw_channel).result(timeout=timeout)

    def _t(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is None else timeout

    def place(self, batch: Batch | types_pb2.Batch, hour: int | None = None, dry_run: bool = False,
              timeout: float | None = None) -> placement_pb2.PlaceResponse:
        b = batch if isinstance(batch, types_pb2.Batch) else convert.batch_to_pb(batch)
        return self.placement.Place(placement_pb2.PlaceRequest(batch=b, hour=hour, dry_run=dry_run),
                                    timeout=self._t(timeout))

    def place_batch(self, batches: Iterable[Batch | types_pb2.Batch], hour: int | None = None,
                    dry_run: bool = False, time_limit_ms: int = 0, timeout: float | None = None,
                    compact: bool = False) -> placement_pb2.PlaceBatchResponse:
        """`compact`: ask for the compact answer (the decisions column by column in `response.columns`, routes
        listed once in `response.routes`): ~1/5 of the bytes and much quicker to build and read for large calls.
        `convert.decisions_of(response)` gives Decision messages from either form, `convert.reservation_ids_of`
        the holds to release."""
        msgs = [b if isinstance(b, types_pb2.Batch) else convert.batch_to_pb(b) for b in batches]
        request = placement_pb2.PlaceBatchRequest(batches=msgs, hour=hour, dry_run=dry_run,
                                                  time_limit_ms=time_limit_ms, compact=compact)
        return self.placement.PlaceBatch(request, timeout=self._t(timeout))

    def get_plan(self, demand: Iterable[DemandCell | types_pb2.DemandCell], hour: int | None = None,
                 policy: str = "", use_ledger: bool = False,
                 timeout: float | None = None) -> placement_pb2.GetPlanResponse:
        cells = [c if isinstance(c, types_pb2.DemandCell) else convert.cell_to_pb(c) for c in demand]
        request = placement_pb2.GetPlanRequest(demand=cells, hour=hour, policy=policy, use_ledger=use_ledger)
        return self.placement.GetPlan(request, timeout=self._t(timeout))

    def release(self, reservation_ids: Sequence[int], timeout: float | None = None) -> placement_pb2.ReleaseResponse:
        return self.placement.Release(placement_pb2.ReleaseRequest(reservation_ids=reservation_ids),
                                      timeout=self._t(timeout))

    def get_topology(self, timeout: float | None = None) -> topology_pb2.GetTopologyResponse:
        return self.topology.GetTopology(topology_pb2.GetTopologyRequest(), timeout=self._t(timeout))

    def watch_topology(self, timeout: float | None = None, reconnect: bool = True) -> Watch:
        """Topology events (first the current state, then every reload result); cancel with `.cancel()` on the
        returned iterator. `timeout` bounds the whole watch. With `reconnect` (the default), a stream the server
        ends at its max stream age is replaced by a new one at once, without a repeat of what was already seen; a
        stream ended because the server stops (or any error) ends the iteration."""

        def open_stream(left: float | None):
            return self.topology.WatchTopology(topology_pb2.WatchTopologyRequest(), timeout=left)

        return Watch(open_stream, timeout, reconnect)

    def set_link_status(self, ids: Sequence[str], up: bool,
                        timeout: float | None = None) -> operator_pb2.SetLinkStatusResponse:
        """Operator role: cut (up=False) or repair cables/links."""
        return self.operator.SetLinkStatus(operator_pb2.SetLinkStatusRequest(ids=ids, up=up),
                                           timeout=self._t(timeout))

    def reload_topology(self, timeout: float | None = None) -> operator_pb2.ReloadTopologyResponse:
        """Operator role: read the topology file now."""
        return self.operator.ReloadTopology(operator_pb2.ReloadTopologyRequest(), timeout=self._t(timeout))

    def list_holds(self, owner: str = "", pool: str = "", limit: int = 0,
                   timeout: float | None = None) -> operator_pb2.ListHoldsResponse:
        """Operator role: live holds (every replica's in cluster mode), soonest to end first."""
        return self.operator.ListHolds(operator_pb2.ListHoldsRequest(owner=owner, pool=pool, limit=limit),
                                       timeout=self._t(timeout))

    def release_holds(self, ids: Sequence[int] = (), owner: str = "", pool: str = "",
                      timeout: float | None = None) -> operator_pb2.ReleaseHoldsResponse:
        """Operator role: free holds by id, token or pool."""
        return self.operator.ReleaseHolds(operator_pb2.ReleaseHoldsRequest(ids=ids, owner=owner, pool=pool),
                                          timeout=self._t(timeout))

    def close(self) -> None:
        self.raw_channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Watch:
    """An iterator of TopologyEvents over one or more WatchTopology streams (see `Client.watch_topology`). Reads
    like the grpc call it wraps: `cancel()`, `code()`, `details()`, `trailing_metadata()`... are the current
    stream's. `reconnects` counts the streams opened after the first."""

    def __init__(self, open_stream: Callable[[float | None], object], timeout: float | None, reconnect: bool):
        self._open = open_stream
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._reconnect = reconnect
        self._lock = threading.Lock()
        self._cancelled = False
        self._last: topology_pb2.TopologyEvent | None = None
        self._fresh = False  # the current stream replaced one the server ended at its max age
        self.reconnects = 0
        self._call = open_stream(timeout)

    def __iter__(self) -> Watch:
        return self

    def __next__(self) -> topology_pb2.TopologyEvent:
        while True:
            call = self._call
            try:
                event = next(call)  # type: ignore[call-overload]
            except StopIteration:
                if not self._replace(call):
                    raise
                continue
            if self._fresh:
                self._fresh = False
                if (event.kind == topology_pb2.TopologyEvent.KIND_CURRENT and self._last is not None
                        and event.topology_version == self._last.topology_version
                        and event.reload == self._last.reload):
                    continue  # nothing happened while we reconnected
            self._last = event
            return event

    def _replace(self, ended) -> bool:
        """After a stream ended cleanly: open the next one if the server ended it at its max age."""
        if not self._reconnect or _trailer(ended, WATCH_END_KEY) != END_MAX_AGE:
            return False
        with self._lock:
            if self._cancelled:
                return False
            left = None if self._deadline is None else self._deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            self._call = self._open(left)
            self._fresh = True
            self.reconnects += 1
            return True

    def cancel(self) -> bool:
        with self._lock:
            self._cancelled = True
            return self._call.cancel()  # type: ignore[attr-defined]

    def __getattr__(self, name: str):
        if name == "_call":  # not opened (the first stream failed to open)
            raise AttributeError(name)
        return getattr(self._call, name)


def _trailer(e: grpc.RpcError, key: str) -> str | bytes | None:
    for k, v in (e.trailing_metadata() or ()):  # type: ignore[attr-defined]
        if k == key:
            return v
    return None


def error_field(e: grpc.RpcError) -> str | None:
    return _trailer(e, FIELD_KEY)  # type: ignore[return-value]


def error_version(e: grpc.RpcError) -> str | None:
    return _trailer(e, VERSION_KEY)  # type: ignore[return-value]


def error_decision(e: grpc.RpcError) -> types_pb2.Decision | None:
    """For an unplaced Place: the decision with every rejected site and why."""
    raw = _trailer(e, DECISION_KEY)
    return types_pb2.Decision.FromString(raw) if isinstance(raw, bytes) else None


def request_id(e_or_call) -> str | None:
    """The request id the server used, from an error or a call made `with_call` (its trailing metadata)."""
    return _trailer(e_or_call, REQUEST_ID_KEY)  # type: ignore[return-value]


def error_text(e: grpc.RpcError) -> str:
    code = e.code()  # type: ignore[attr-defined]
    return f"{code.name if code else 'UNKNOWN'}: {e.details()}"  # type: ignore[attr-defined]
