"""ListHolds and ReleaseHolds: an operator's view of the ledger's holds, and a broom for them.

Holds are listed soonest-to-end first, cut at a limit, with totals per token and per pool over every match; in
cluster mode the servicer merges the answers of every replica it can reach (scheduler/service/operator.py).
"""

from __future__ import annotations

import math
import time

from scheduler.engine.ledger import CABLE_KEY_PREFIX, Ledger
from scheduler.service import convert
from scheduler.v1 import operator_pb2

DEFAULT_LIMIT = 1000
MAX_LIMIT = 100_000


def list_holds(ledger: Ledger, owner: str, pool: str, limit: int, replica: str = "") -> operator_pb2.ListHoldsResponse:
    """This process's live holds matching the filters ("" matches any)."""
    now_mono, now_wall = time.monotonic(), time.time()
    matched = [r for r in ledger.reservations().values()
               if (not owner or r.owner == owner) and (not pool or r.pool == pool)]
    matched.sort(key=lambda r: (r.expires_at, r.id))
    out = operator_pb2.ListHoldsResponse(total=len(matched))
    for r in matched:
        if not r.pool.startswith(CABLE_KEY_PREFIX):
            out.accelerators_by_owner[r.owner] = out.accelerators_by_owner[r.owner] + r.accelerators
        out.amount_by_pool[r.pool] = out.amount_by_pool[r.pool] + r.accelerators
    for r in matched[:limit]:
        h = out.holds.add(id=r.id, pool=r.pool, amount=r.accelerators, owner=r.owner, replica=replica)
        h.expires_at.CopyFrom(convert.timestamp(now_wall + r.expires_at - now_mono))
        if r.ceiling < math.inf:
            h.ceiling = r.ceiling
    return out


def merge(answers: list[operator_pb2.ListHoldsResponse], limit: int) -> operator_pb2.ListHoldsResponse:
    """Several replicas' answers as one: totals added, holds soonest-to-end first up to `limit`."""
    out = operator_pb2.ListHoldsResponse()
    holds = []
    for a in answers:
        out.total += a.total
        for k, v in a.accelerators_by_owner.items():
            out.accelerators_by_owner[k] = out.accelerators_by_owner[k] + v
        for k, v in a.amount_by_pool.items():
            out.amount_by_pool[k] = out.amount_by_pool[k] + v
        holds.extend(a.holds)
    holds.sort(key=lambda h: (h.expires_at.seconds, h.expires_at.nanos, h.id))
    out.holds.extend(holds[:limit])
    return out


def release_holds(ledger: Ledger, ids: list[int], owner: str, pool: str) -> int:
    """Free this process's holds: the ids given (narrowed by the filters), else every hold the filters match."""
    if ids:
        if not owner and not pool:
            return ledger.release_many(ids)
        live = ledger.reservations()
        return ledger.release_many([i for i in ids if i in live and (not owner or live[i].owner == owner)
                                    and (not pool or live[i].pool == pool)])
    return ledger.release_where(owner or None, pool or None)
