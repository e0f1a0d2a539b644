"""A small client for the control plane: typed calls over one channel, and helpers to read errors."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import grpc

from scheduler.engine.request import Batch, DemandCell
from scheduler.service import convert
from scheduler.service.errors import DECISION_KEY, FIELD_KEY, VERSION_KEY
from scheduler.v1 import placement_pb2, placement_pb2_grpc, topology_pb2, topology_pb2_grpc, types_pb2

DEFAULT_TARGET = "localhost:50051"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class Client:
    """Engine types or proto messages in, proto responses out; gRPC errors propagate as grpc.RpcError."""

    def __init__(self, target: str = DEFAULT_TARGET, timeout: float | None = 30.0):
        self.target = target
        self.timeout = timeout
        self.channel = grpc.insecure_channel(target, options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ])
        self.placement = placement_pb2_grpc.PlacementServiceStub(self.channel)
        self.topology = topology_pb2_grpc.TopologyServiceStub(self.channel)

    def wait_ready(self, timeout: float = 5.0) -> None:
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def _t(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is None else timeout

    def place(self, batch: Batch | types_pb2.Batch, hour: int | None = None, dry_run: bool = False,
              timeout: float | None = None) -> placement_pb2.PlaceResponse:
        b = batch if isinstance(batch, types_pb2.Batch) else convert.batch_to_pb(batch)
        return self.placement.Place(placement_pb2.PlaceRequest(batch=b, hour=hour, dry_run=dry_run),
                                    timeout=self._t(timeout))

    def place_batch(self, batches: Iterable[Batch | types_pb2.Batch], hour: int | None = None,
                    dry_run: bool = False, time_limit_ms: int = 0,
                    timeout: float | None = None) -> placement_pb2.PlaceBatchResponse:
        msgs = [b if isinstance(b, types_pb2.Batch) else convert.batch_to_pb(b) for b in batches]
        request = placement_pb2.PlaceBatchRequest(batches=msgs, hour=hour, dry_run=dry_run,
                                                  time_limit_ms=time_limit_ms)
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

    def watch_topology(self, timeout: float | None = None) -> Iterator[topology_pb2.TopologyEvent]:
        """A server stream; cancel it with `.cancel()` on the returned iterator."""
        return self.topology.WatchTopology(topology_pb2.WatchTopologyRequest(), timeout=timeout)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


def error_text(e: grpc.RpcError) -> str:
    code = e.code()  # type: ignore[attr-defined]
    return f"{code.name if code else 'UNKNOWN'}: {e.details()}"  # type: ignore[attr-defined]
