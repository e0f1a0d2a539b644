"""The leader's arithmetic, pure: from every replica's demand, claim and grant, the next grants.

Per key (a pool's accelerators or a cable's Gbps) of capacity `cap`:
- a replica's *counted* amount is max(its grant, its claim): the claim is what it last said it enforces (its limit,
  or its holds if they are above a limit that shrank), so the counted amounts bound every replica's holds even
  while grants are in flight;
- a dead replica keeps its counted amount until its holds could have ended, then counts nothing;
- a live replica's demand is its holds (with headroom) plus what it refused lately while the fleet had room (its
  share was short: the accelerators those batches needed);
- targets split what the dead do not hold among the live: while plenty is left over beyond their demand, each gets
  its demand and an equal part of the rest; near full, each keeps what it holds and the free room goes whole to
  one replica (parts of it could each be too small for a batch that fits the whole; the others pass such batches
  on to that replica);
- grants shrink at once, and grow only into what the counted amounts leave free: a replica's shrink must be
  claimed (acknowledged) before another grows into it. So the counted amounts never sum past `cap`.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

FLOOR = 0.05  # of the capacity the live share: every live replica keeps at least this much room to start from
HEADROOM = 1.25  # demand = holds x this, so a replica that is filling up gets room before it is full
HUNGRY = 2.0  # a replica that refused placements for capacity asks this many times its share on keys near full
SPREAD_WHILE_FREE = 0.25  # of the room: while this much is left beyond every replica's demand, it is spread evenly


@dataclass(frozen=True)
class Member:
    name: str
    alive: bool
    grant: dict[str, float]  # current grant per key (absent: 0)
    claim: dict[str, float]  # what it last published as enforced (absent: 0)
    used: dict[str, float]  # its holds per key, as last published
    hungry: bool = False  # refused placements for capacity since its last report
    expired: bool = False  # dead past the time its holds could have ended: counts nothing
    wanted: dict[str, float] = field(default_factory=dict)  # refused lately while the fleet had room, per key


def counted(m: Member, key: str) -> float:
    if m.expired:
        return 0.0
    return max(m.grant.get(key, 0.0), m.claim.get(key, 0.0))


def demand(m: Member, key: str) -> float:
    used = m.used.get(key, 0.0)
    want = used * HEADROOM + m.wanted.get(key, 0.0)
    share = m.grant.get(key, 0.0)
    if m.hungry and used >= 0.8 * share:
        want = max(want, share * HUNGRY)
    return want


def targets(members: list[Member], key: str, cap: float) -> dict[str, float]:
    """What each live replica should get of `key` once the dust settles (the dead keep their counted amount)."""
    live = [m for m in members if m.alive]
    dead = sum(counted(m, key) for m in members if not m.alive)
    room = max(0.0, cap - dead)
    if not live:
        return {}
    floor = FLOOR * room / len(live)
    wants = {m.name: max(demand(m, key), floor) for m in live}
    total = sum(wants.values())
    # Everything is handed out (a replica judges latency at the others' shares: cap - its own).
    if room - total >= SPREAD_WHILE_FREE * room:  # plenty left over: in equal parts, for the next burst anywhere
        return {name: w + (room - total) / len(live) for name, w in wants.items()}
    # Near full, each keeps what it holds and the free room goes whole to one replica: split in parts, it can be
    # too small in each part for a batch that fits in the sum (the others pass such batches on to that one).
    held = {m.name: min(m.used.get(key, 0.0), room) for m in live}
    free = max(0.0, room - sum(held.values()))
    owner = free_room_owner(live, key)
    return {name: h + (free if name == owner else 0.0) for name, h in held.items()}


def free_room_owner(live: list[Member], key: str) -> str:
    """The replica that gets a nearly full key's free room: the one with most of it already (so it stays put
    between rounds), else the one that refused most for want of it; ties spread over keys by a hash."""
    def rank(m: Member) -> tuple:
        return (m.grant.get(key, 0.0) - m.used.get(key, 0.0), m.wanted.get(key, 0.0),
                zlib.crc32(f"{key}/{m.name}".encode()))

    return max(live, key=rank).name


def next_grants(members: list[Member], caps: dict[str, float]) -> dict[str, dict[str, float]]:
    """The grants to write: per live replica, per key. Shrinks are immediate; growth only into free room."""
    out: dict[str, dict[str, float]] = {m.name: dict(m.grant) for m in members if m.alive}
    for key, cap in caps.items():
        if math.isinf(cap):
            for name in out:
                out[name][key] = math.inf
            continue
        want = targets(members, key, cap)
        for m in members:  # shrink first
            if m.alive and want[m.name] < m.grant.get(key, 0.0):
                out[m.name][key] = want[m.name]
        free = cap - sum(max(out[m.name].get(key, 0.0), m.claim.get(key, 0.0)) if m.alive else counted(m, key)
                         for m in members)
        for m in sorted((m for m in members if m.alive), key=lambda m: m.name):
            now = out[m.name].get(key, 0.0)
            held = max(now, m.claim.get(key, 0.0))
            if want[m.name] > now:
                add = min(want[m.name] - held, max(0.0, free)) if want[m.name] > held else 0.0
                out[m.name][key] = max(now, min(want[m.name], held + add))
                free -= max(0.0, out[m.name][key] - held)
    return out
