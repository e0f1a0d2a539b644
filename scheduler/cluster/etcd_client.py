"""A small etcd v3 client over etcd's own gRPC API (stubs generated from its protos into scheduler/etcdpb).

Why not a PyPI client: `etcd3` is unmaintained and pins an old protobuf; `etcd3gw` goes through the JSON gateway
and has no elections. etcd's gRPC API is stable since 3.0, and compiling its protos with the grpcio-tools we
already pin adds no dependency. Only what cluster mode needs is here: get/put/delete, transactions, leases and
the election service.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import grpc

from scheduler.etcdpb import (kv_pb2, rpc_pb2, rpc_pb2_grpc, v3election_pb2,  # noqa: F401 (kv_pb2: types)
                              v3election_pb2_grpc)

DEFAULT_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Entry:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


def _entry(kv) -> Entry:
    return Entry(kv.key.decode(), kv.value, kv.create_revision, kv.mod_revision, kv.lease)


def _range_end(prefix: str) -> bytes:
    """The end of the key range holding every key that starts with `prefix`."""
    b = bytearray(prefix.encode())
    for i in range(len(b) - 1, -1, -1):
        if b[i] < 0xFF:
            b[i] += 1
            return bytes(b[: i + 1])
    return b"\0"


class Etcd:
    """One channel to the etcd members (round_robin over their addresses); every call has a deadline."""

    def __init__(self, endpoints: Sequence[str], timeout_s: float = DEFAULT_TIMEOUT_S):
        target = endpoints[0] if len(endpoints) == 1 else "ipv4:" + ",".join(endpoints)
        if len(endpoints) > 1 and any(not e[0].isdigit() for e in endpoints):
            target = endpoints[0]  # names: let DNS give the members (a list of names is not one target)
        self.channel = grpc.insecure_channel(target, options=[("grpc.lb_policy_name", "round_robin")])
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.leases = rpc_pb2_grpc.LeaseStub(self.channel)
        self.election = v3election_pb2_grpc.ElectionStub(self.channel)
        self.timeout_s = timeout_s

    def close(self) -> None:
        self.channel.close()

    # --- keys ----------------------------------------------------------------------------------------------------
    def get(self, key: str) -> Entry | None:
        r = self.kv.Range(rpc_pb2.RangeRequest(key=key.encode()), timeout=self.timeout_s)
        return _entry(r.kvs[0]) if r.kvs else None

    def get_prefix(self, prefix: str) -> list[Entry]:
        r = self.kv.Range(rpc_pb2.RangeRequest(key=prefix.encode(), range_end=_range_end(prefix)),
                          timeout=self.timeout_s)
        return [_entry(kv) for kv in r.kvs]

    def put(self, key: str, value: bytes, lease: int = 0) -> None:
        self.kv.Put(rpc_pb2.PutRequest(key=key.encode(), value=value, lease=lease), timeout=self.timeout_s)

    def put_if_absent(self, key: str, value: bytes) -> bytes:
        """`value` stored at `key` unless the key exists; the value stored either way."""
        r = self.txn([self.same_version(key, 0)], [self.op_put(key, value)], [self.op_get(key)])
        return value if r.succeeded else r.responses[0].response_range.kvs[0].value

    def revision(self) -> int:
        """The store's current revision."""
        r = self.kv.Range(rpc_pb2.RangeRequest(key=b"\0", count_only=True), timeout=self.timeout_s)
        return r.header.revision

    def compact(self, revision: int) -> None:
        """Drop the history before `revision` (etcd keeps every version of every key until told to)."""
        self.kv.Compact(rpc_pb2.CompactionRequest(revision=revision), timeout=self.timeout_s)

    def delete(self, key: str) -> None:
        self.kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=key.encode()), timeout=self.timeout_s)

    # --- transactions --------------------------------------------------------------------------------------------
    @staticmethod
    def op_put(key: str, value: bytes, lease: int = 0) -> rpc_pb2.RequestOp:
        return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key.encode(), value=value, lease=lease))

    @staticmethod
    def op_delete(key: str) -> rpc_pb2.RequestOp:
        return rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=key.encode()))

    @staticmethod
    def op_get(key: str) -> rpc_pb2.RequestOp:
        return rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key.encode()))

    @staticmethod
    def same_version(key: str, version: int) -> rpc_pb2.Compare:
        """The key's version is `version` (0: the key does not exist)."""
        return rpc_pb2.Compare(key=key.encode(), result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.VERSION,
                               version=version)

    @staticmethod
    def same_create_revision(key: str, revision: int) -> rpc_pb2.Compare:
        """The key exists and was created at `revision` (fencing: a leader key not replaced since we won)."""
        return rpc_pb2.Compare(key=key.encode(), result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.CREATE,
                               create_revision=revision)

    def txn(self, compare: Iterable[rpc_pb2.Compare], success: Iterable[rpc_pb2.RequestOp],
            failure: Iterable[rpc_pb2.RequestOp] = ()) -> rpc_pb2.TxnResponse:
        return self.kv.Txn(rpc_pb2.TxnRequest(compare=list(compare), success=list(success), failure=list(failure)),
                           timeout=self.timeout_s)

    # --- leases --------------------------------------------------------------------------------------------------
    def grant(self, ttl_s: float) -> int:
        return self.leases.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=max(1, math.ceil(ttl_s))),
                                      timeout=self.timeout_s).ID

    def keepalive(self, lease: int) -> int:
        """Refresh a lease once; its remaining TTL in seconds (0 or less: the lease is gone)."""
        stream = self.leases.LeaseKeepAlive(iter([rpc_pb2.LeaseKeepAliveRequest(ID=lease)]), timeout=self.timeout_s)
        for answer in stream:
            return answer.TTL
        return 0

    def revoke(self, lease: int) -> None:
        self.leases.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=lease), timeout=self.timeout_s)

    # --- elections -----------------------------------------------------------------------------------------------
    def campaign(self, name: str, lease: int, value: bytes, timeout_s: float | None) -> v3election_pb2.LeaderKey:
        """Block until this lease leads election `name` (etcd's own election service); the leader key fences
        the leader's writes (`same_create_revision(key.key, key.rev)`)."""
        r = self.election.Campaign(v3election_pb2.CampaignRequest(name=name.encode(), lease=lease, value=value),
                                   timeout=timeout_s)
        return r.leader

    def resign(self, leader: v3election_pb2.LeaderKey) -> None:
        self.election.Resign(v3election_pb2.ResignRequest(leader=leader), timeout=self.timeout_s)

    def leader(self, name: str) -> Entry | None:
        try:
            r = self.election.Leader(v3election_pb2.LeaderRequest(name=name.encode()), timeout=self.timeout_s)
        except grpc.RpcError as e:
            if "no leader" in (e.details() or ""):
                return None
            raise
        return _entry(r.kv)

    def next_number(self, key: str, limit: int) -> int:
        """Take the next number of a counter kept at `key` (1, 2, ...; compare-and-swap, retried on a race)."""
        while True:
            entry = self.get(key)
            n = (int(entry.value) if entry else 0) + 1
            if n > limit:
                raise RuntimeError(f"{key}: counter past {limit}")
            cond = [self.same_version(key, 0)] if entry is None else [
                rpc_pb2.Compare(key=key.encode(), result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.MOD,
                                mod_revision=entry.mod_revision)]
            if self.txn(cond, [self.op_put(key, str(n).encode())]).succeeded:
                return n
