"""One rebalancing round of the elected leader: read every replica's state, write the next grants in one
transaction fenced by the leader key (a deposed leader's write fails), and retire replicas dead long enough."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from scheduler.cluster.etcd_client import Etcd
from scheduler.cluster.keys import Keys, amounts, encode
from scheduler.cluster.shares import Member, next_grants
from scheduler.etcdpb import v3election_pb2


@dataclass
class Round:
    written: int  # grants changed
    retired: list[str]  # replicas whose share returned


def rebalance(etcd: Etcd, keys: Keys, leader: v3election_pb2.LeaderKey, caps: dict[str, float],
              max_hold_s: float, lease_ttl_s: float, now: float | None = None) -> Round | None:
    """None when this process is no longer the leader (the fenced write failed)."""
    now = time.time() if now is None else now
    alive = {keys.name_of(e.key): json.loads(e.value) for e in etcd.get_prefix(keys.alive())}
    claims = {keys.name_of(e.key): json.loads(e.value) for e in etcd.get_prefix(keys.claims())}
    grants = {keys.name_of(e.key): amounts(json.loads(e.value)) for e in etcd.get_prefix(keys.grants())}
    gone = {keys.name_of(e.key): json.loads(e.value)["since"] for e in etcd.get_prefix(keys.gone())}
    ops, retired, members = [], [], []
    for name in sorted(set(alive) | set(claims) | set(grants)):
        claim = claims.get(name, {})
        expired = False
        if name in alive:
            if name in gone:
                ops.append(etcd.op_delete(keys.gone(name)))
        else:
            since = gone.get(name)
            if since is None:
                since = now
                ops.append(etcd.op_put(keys.gone(name), encode({"since": now})))
            # Holds made up to its lease's end (<= since) end within max_hold_s; those published end by horizon.
            deadline = max(float(claim.get("horizon", 0.0)), since + max_hold_s + lease_ttl_s)
            if now > deadline:
                expired = True
                retired.append(name)
                ops += [etcd.op_delete(keys.claims(name)), etcd.op_delete(keys.grants(name)),
                        etcd.op_delete(keys.gone(name))]
        members.append(Member(name, name in alive, grants.get(name, {}), amounts(claim.get("claim")),
                              amounts(claim.get("used")), bool(claim.get("hungry")), expired,
                              amounts(claim.get("wanted"))))
    new = next_grants(members, caps)
    changed = 0
    for name, grant in new.items():
        old = grants.get(name, {})
        if any(abs(grant.get(k, 0.0) - old.get(k, 0.0)) > 1e-6 for k in set(grant) | set(old)
               if grant.get(k, 0.0) != old.get(k, 0.0)):
            ops.append(etcd.op_put(keys.grants(name), encode(grant)))
            changed += 1
    if not ops:
        return Round(0, [])
    r = etcd.txn([etcd.same_create_revision(leader.key.decode(), leader.rev)], ops)
    return Round(changed, retired) if r.succeeded else None
