"""One rebalancing round of the elected leader: read every replica's state, write the next grants in one
transaction fenced by the leader key (a deposed leader's write fails), and retire replicas dead long enough.

A replica's run ends when its lease does (a crash, a lapse, a restart). From then on the leader counts what that run
can still hold, by its last claim: the holds it had, as they end, plus its budget of new holds until those could
have ended. The rest of its share goes back to the others at once. A replica back under a new lease counts the same
way until it publishes a claim built under that lease, and it gets a grant written for that lease only.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from scheduler.cluster.claims import Claim
from scheduler.cluster.etcd_client import Etcd
from scheduler.cluster.keys import Keys, amounts, encode
from scheduler.cluster.shares import Member, next_grants
from scheduler.etcdpb import v3election_pb2

MAX_CLOCK_SKEW_S = 0.5  # replicas' wall clocks agree within this (NTP keeps them within milliseconds)


@dataclass
class Round:
    written: int  # grants changed
    retired: list[str]  # replicas whose share returned


@dataclass(frozen=True)
class Grant:
    """A replica's share as the leader wrote it, for one lease of the replica (it enforces no other)."""

    lease: int
    share: dict[str, float]

    @classmethod
    def parse(cls, raw: bytes) -> Grant:
        doc = json.loads(raw)
        return cls(int(doc.get("lease", 0)), amounts(doc.get("share")))

    def encode(self) -> bytes:
        return encode({"lease": self.lease, "share": self.share})


def rebalance(etcd: Etcd, keys: Keys, leader: v3election_pb2.LeaderKey, caps: dict[str, float],
              max_hold_s: float, now: float | None = None) -> Round | None:
    """None when this process is no longer the leader (the fenced write failed)."""
    now = time.time() if now is None else now
    alive = {keys.name_of(e.key): e.lease for e in etcd.get_prefix(keys.alive())}
    claims = {keys.name_of(e.key): Claim.parse(e.value) for e in etcd.get_prefix(keys.claims())}
    grants = {keys.name_of(e.key): Grant.parse(e.value) for e in etcd.get_prefix(keys.grants())}
    gone = {keys.name_of(e.key): json.loads(e.value)["since"] for e in etcd.get_prefix(keys.gone())}
    ops, retired, members = [], [], []
    for name in sorted(set(alive) | set(claims) | set(grants)):
        claim, grant, lease = claims.get(name), grants.get(name), alive.get(name)
        share = grant.share if grant is not None else {}
        current = lease is not None and (claim is None or claim.lease == lease)
        if current:  # the claim was built under the lease it holds now: it enforces max(grant, claim)
            if name in gone:
                ops.append(etcd.op_delete(keys.gone(name)))
            members.append(Member(name, True, share if grant is not None and grant.lease == lease else {},
                                  claim.claim if claim else {}, claim.used if claim else {},
                                  bool(claim and claim.hungry), False, claim.wanted if claim else {}))
            continue
        # Its run that built the claim has ended: count what that run can still hold.
        since = gone.get(name)
        if since is None:
            since = now
            ops.append(etcd.op_put(keys.gone(name), encode({"since": now})))
        # New holds of that run were made before it stopped placing and last at most max_hold_s. It stopped
        # before its lease expired (`since`), or, if another replica revoked the lease (found it not listening),
        # at most `placing_s` after; MAX_CLOCK_SKEW_S covers the clocks of two machines disagreeing (its profile
        # is in its clock).
        new_until = since + (claim.placing_s if claim else 0.0) + max_hold_s + MAX_CLOCK_SKEW_S
        enforced = {k: max(share.get(k, 0.0), (claim.claim if claim else {}).get(k, 0.0)) for k in caps}
        bound = claim.held_bound(now - MAX_CLOCK_SKEW_S, new_until) if claim is not None else None
        if bound is not None:
            enforced = {k: min(v, bound.get(k, 0.0)) for k, v in enforced.items()}
        horizon = claim.horizon if claim is not None else 0.0
        expired = lease is None and now > max(horizon, new_until)
        if expired:
            retired.append(name)
            ops += [etcd.op_delete(keys.claims(name)), etcd.op_delete(keys.grants(name)),
                    etcd.op_delete(keys.gone(name))]
        members.append(Member(name, lease is not None, {}, enforced, claim.used if claim else {}, False, expired))
    new = next_grants(members, caps)
    changed = 0
    for name, share in new.items():
        old = grants.get(name)
        if old is None or old.lease != alive[name] or any(
                abs(share.get(k, 0.0) - old.share.get(k, 0.0)) > 1e-6 for k in set(share) | set(old.share)
                if share.get(k, 0.0) != old.share.get(k, 0.0)):
            ops.append(etcd.op_put(keys.grants(name), Grant(alive[name], share).encode()))
            changed += 1
    if not ops:
        return Round(0, [])
    r = etcd.txn([etcd.same_create_revision(leader.key.decode(), leader.rev)], ops)
    return Round(changed, retired) if r.succeeded else None
