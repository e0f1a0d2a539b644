"""Calls passed on to another replica (service/placement.py's Peers): Release and operator calls to the replica
that holds the ids, and a Place this replica's share could not hold to the replica with the most room for it.

The run number in an id's high bits names the replica (etcd `boots/<n>`, cached: it never changes); its address
comes from its `alive` key. Calls carry the caller's metadata (so the holder checks the same token) plus a
marker that stops them from being passed on again, signed with the cluster's secret (etcd `secret`): a call a
replica passes on was admitted by its concurrency limit already, so the peer serves it beyond its own
(`forwarded_by_peer`); a client cannot forge one to jump the limit. None of this is on the placement path: a
Place is passed on only once this replica has refused it.

A peer that does not answer is a suspect; the replica's loop probes it (`refuses_connections`): a machine that
actively refuses a TCP connection on the peer's port has no process listening there, so that run is dead, and its
lease is revoked at once instead of waiting out the TTL (replica.py). A peer that only times out is left to the TTL:
it may be alive behind a partition.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import threading
from collections.abc import Sequence

import grpc

from scheduler.cluster.etcd_client import Etcd
from scheduler.cluster.keys import Keys
from scheduler.cluster.settings import PeerTls
from scheduler.service.client import make_channel
from scheduler.service.ids import boot_of
from scheduler.service.placement import FORWARDED_KEY, PeerUnavailable
from scheduler.v1 import operator_pb2_grpc, placement_pb2, placement_pb2_grpc

CALL_TIMEOUT_S = 3.0
PROBE_TIMEOUT_S = 0.2  # a suspect that neither accepts nor refuses a connection this fast is left to its TTL
PASSED_ON = ("authorization", "x-request-id")  # the caller's metadata a passed-on call keeps
UNANSWERED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)  # the peer did not answer


class ClusterPeers:
    def __init__(self, name: str, boot: int, etcd: Etcd, keys: Keys, secret: bytes = b"",
                 tls: PeerTls | None = None):
        self.name = name
        self._tls = tls
        self._secret = secret
        self._marker = f"{name}:{self._sign(name)}"
        self.boot = boot
        self._etcd = etcd
        self._keys = keys
        self._owners: dict[int, str | None] = {}
        self._lock = threading.Lock()
        self.addresses: dict[str, str] = {}  # live replicas' addresses, refreshed by the replica's loop (`alive`)
        self.room: dict[str, dict[str, float]] = {}  # per replica, per key: its share left unused, as published
        self._runs: dict[str, int] = {}  # per live replica, its run number
        self._channels: dict[str, grpc.Channel] = {}  # per address
        self._suspects: dict[str, int] = {}  # replicas that did not answer a call: their run number then

    def owner_of(self, reservation_id: int) -> str | None:
        boot = boot_of(reservation_id)
        if boot == self.boot or boot == 0:
            return None
        with self._lock:
            known = boot in self._owners
            name = self._owners.get(boot)
        if not known:
            try:
                entry = self._etcd.get(self._keys.boot(boot))
            except grpc.RpcError:
                raise PeerUnavailable(f"etcd did not answer who issued id {reservation_id}") from None
            name = entry.value.decode() if entry else None
            with self._lock:
                self._owners[boot] = name
        return None if name in (None, self.name) else name  # an earlier run of this replica: restored here

    def alive(self, replicas: dict[str, tuple[str, int]]) -> None:
        """The live replicas, as (address, run number) by name. A replica back under a new run gets a new channel:
        the old one may be waiting out a reconnection backoff from while it was down."""
        stale = []
        with self._lock:
            for name, (address, run) in replicas.items():
                if self._runs.get(name, run) != run and address in self._channels:
                    stale.append(self._channels.pop(address))
            self._runs = {name: run for name, (_, run) in replicas.items()}
            self.addresses = {name: address for name, (address, _) in replicas.items()}
        for ch in stale:
            ch.close()

    def _channel(self, replica: str) -> grpc.Channel:
        address = self.addresses.get(replica)
        if address is None:
            raise PeerUnavailable(replica)
        with self._lock:
            ch = self._channels.get(address)
            if ch is None:
                tls = self._tls
                ch = self._channels[address] = (make_channel(address) if tls is None else
                                                 make_channel(address, True, tls.ca, tls.cert, tls.key))
            return ch

    def _sign(self, name: str) -> str:
        return hmac.new(self._secret, name.encode(), hashlib.sha256).hexdigest()

    def forwarded_by_peer(self, metadata: Sequence[tuple[str, str]]) -> bool:
        """Whether a call was passed on by another replica of this cluster (its marker signed with the secret)."""
        for k, v in metadata:
            if k == FORWARDED_KEY:
                name, _, mac = v.partition(":")
                return bool(self._secret) and hmac.compare_digest(mac, self._sign(name))
        return False

    def _metadata(self, metadata: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(k, v) for k, v in metadata if k in PASSED_ON] + [(FORWARDED_KEY, self._marker)]

    def _placement(self, replica: str, method: str, request: object, metadata: Sequence[tuple[str, str]],
                   timeout: float | None = None):
        """PlacementService.`method` at `replica` with the caller's credentials: PeerUnavailable when it does not
        answer in time; any other failure (a refusal) as the grpc.RpcError it raised."""
        stub = placement_pb2_grpc.PlacementServiceStub(self._channel(replica))
        try:
            return getattr(stub, method)(request, timeout=min(CALL_TIMEOUT_S, timeout or CALL_TIMEOUT_S),
                                         metadata=self._metadata(metadata))
        except grpc.RpcError as e:
            if e.code() in UNANSWERED:
                self._suspect(replica)
                raise PeerUnavailable(replica) from None
            raise

    def _suspect(self, replica: str) -> None:
        with self._lock:
            if replica in self._runs:
                self._suspects[replica] = self._runs[replica]

    def suspects(self) -> dict[str, int]:
        """The replicas that failed to answer since last asked, with the run number they had then."""
        with self._lock:
            out, self._suspects = self._suspects, {}
        return out

    def forward_release(self, replica: str, ids: list[int], metadata: Sequence[tuple[str, str]]) -> int:
        return self._placement(replica, "Release", placement_pb2.ReleaseRequest(reservation_ids=ids),
                               metadata).released

    def by_room(self, keys: Sequence[str]) -> list[str]:
        """The other live replicas, the one with the most room left in its share on every key of `keys` first
        (as last published; ties by name)."""
        def room(replica: str) -> float:
            left = self.room.get(replica, {})
            return min((left.get(k, 0.0) for k in keys), default=0.0)

        return sorted((r for r in self.addresses if r != self.name), key=lambda r: (-room(r), r))

    def forward_place(self, replica: str, request: placement_pb2.PlaceRequest,
                      metadata: Sequence[tuple[str, str]], timeout: float | None) -> placement_pb2.PlaceResponse:
        return self._placement(replica, "Place", request, metadata, timeout)

    def forward_place_batch(self, replica: str, request: placement_pb2.PlaceBatchRequest,
                            metadata: Sequence[tuple[str, str]],
                            timeout: float | None) -> placement_pb2.PlaceBatchResponse:
        """The full answer (one Decision per batch)."""
        return self._placement(replica, "PlaceBatch", request, metadata, timeout)

    def fan_out(self, method: str, request: object, metadata: Sequence[tuple[str, str]]) -> tuple[list, list[str]]:
        answers, unreachable = [], []
        for replica in sorted(self.addresses):
            if replica == self.name:
                continue
            try:
                stub = operator_pb2_grpc.OperatorServiceStub(self._channel(replica))
                answers.append(getattr(stub, method)(request, timeout=CALL_TIMEOUT_S,
                                                     metadata=self._metadata(metadata)))
            except (grpc.RpcError, PeerUnavailable) as e:
                if isinstance(e, grpc.RpcError) and e.code() in UNANSWERED:
                    self._suspect(replica)
                unreachable.append(replica)
        return answers, unreachable

    def close(self) -> None:
        with self._lock:
            for ch in self._channels.values():
                ch.close()
            self._channels.clear()


def refuses_connections(address: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether `address` (host:port) actively refuses a TCP connection: nothing listens there. False when it
    accepts, times out (a partition, a machine down: only the TTL can tell) or is not a plain host:port."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "/" in host:
        return False
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
