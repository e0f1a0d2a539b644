"""Reservation ids unique across replicas and restarts, still the API's uint64.

An id is `boot << COUNTER_BITS | counter`: `boot` names one run of one replica (a number etcd hands out in cluster
mode, so no two runs anywhere share one; drawn at random in embedded mode, avoiding the numbers this state directory
used before), `counter` counts that run's holds from 1. So an id from before a restart, or from another replica,
can never match a hold it did not name, and in cluster mode the boot number tells which replica owns an id.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection

from scheduler.engine.ledger import RUN_ID_BITS

COUNTER_BITS = RUN_ID_BITS  # 68 billion holds per run
BOOT_BITS = 63 - COUNTER_BITS  # ids stay below 2**63 (int64-safe for every client)
MAX_BOOT = (1 << BOOT_BITS) - 1


def first_id(boot: int) -> int:
    """The first id of run `boot`."""
    if not 1 <= boot <= MAX_BOOT:
        raise ValueError(f"boot: must be 1..{MAX_BOOT}, got {boot}")
    return (boot << COUNTER_BITS) | 1


def boot_of(reservation_id: int) -> int:
    """The run that issued an id (0 for ids no run of this scheme issued, e.g. a client's made-up 7)."""
    return reservation_id >> COUNTER_BITS


def random_boot(avoid: Collection[int] = ()) -> int:
    """A boot number for a run without etcd: random (two replicas sharing one: ~1 in 67 million), never one in
    `avoid` (the runs this state directory remembers)."""
    while True:
        boot = secrets.randbelow(MAX_BOOT) + 1
        if boot not in avoid:
            return boot
