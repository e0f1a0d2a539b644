"""The claim a replica publishes in etcd (`claims/<replica>`) and what it lets the leader conclude.

A claim is built at one instant under the ledger's lock (Ledger.announce): the amount the replica enforces per key
(its share, or its holds if they are above a share that shrank), its holds, the lowest ceiling of its holds, when
each of them ends (a profile in steps), and its budget of new holds from that instant on. It names the lease it was
built under: a claim from an earlier lease (a restart, or a lease that lapsed) says nothing about what the replica
enforces now, only what its earlier run can still hold.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from scheduler.cluster.keys import amounts, encode
from scheduler.engine.budget import held_at


@dataclass(frozen=True)
class Claim:
    lease: int  # the lease it was built under
    boot: int
    claim: dict[str, float]  # per key, what it enforces: the larger of its share and its holds
    used: dict[str, float]  # its holds per key
    ceiling: dict[str, float]  # per key, the lowest ceiling of its holds
    horizon: float  # wall-clock time by which its holds end
    at: float  # wall-clock time it was built
    step_s: float = 1.0
    profile: dict[str, list[float]] = field(default_factory=dict)  # per key, holds ending after at + i * step_s
    budget: dict[str, float] | None = None  # the most new holds per key from `at` on (None: no bound given)
    wanted: dict[str, float] = field(default_factory=dict)  # refused lately while the fleet had room, per key
    hungry: bool = False  # refused placements for capacity since its last claim
    placing_s: float = 0.0  # the longest it may go on placing after its lease ends (a revoked lease: up to 80 % TTL)

    @classmethod
    def parse(cls, raw: bytes | str) -> Claim:
        doc = json.loads(raw)
        budget = doc.get("budget")
        return cls(int(doc.get("lease", 0)), int(doc.get("boot", 0)), amounts(doc.get("claim")),
                   amounts(doc.get("used")), amounts(doc.get("ceiling")), float(doc.get("horizon", math.inf)),
                   float(doc.get("at", 0.0)), float(doc.get("step", 1.0)),
                   {k: [float(x) for x in v] for k, v in (doc.get("profile") or {}).items()},
                   None if budget is None else amounts(budget), amounts(doc.get("wanted")), bool(doc.get("hungry")),
                   float(doc.get("placing", 0.0)))

    def encode(self) -> bytes:
        return encode({"lease": self.lease, "boot": self.boot, "claim": self.claim, "used": self.used,
                       "ceiling": self.ceiling, "horizon": self.horizon, "at": self.at, "step": self.step_s,
                       "profile": self.profile, "budget": self.budget, "wanted": self.wanted,
                       "hungry": self.hungry, "placing": self.placing_s})

    def as_holds(self, now: float, new_until: float) -> list[tuple[str, float, float, float]]:
        """What this claim's run can still hold, as holds (key, amount, ceiling, end): its profile's steps, each
        ending at its step's end (the last at the horizon), and its budget of new holds ending at `new_until`.
        For a restart that lost its own record of them (no state directory): booked again, they stay counted."""
        out = []
        for k, profile in self.profile.items():
            ceiling = self.ceiling.get(k, math.inf)
            for i, held in enumerate(profile):
                last = i == len(profile) - 1
                amount = held - (0.0 if last else profile[i + 1])
                end = self.horizon if last else min(self.horizon, self.at + (i + 1) * self.step_s)
                if amount > 0 and end > now:
                    out.append((k, amount, ceiling, end))
        for k, amount in (self.budget or {}).items():
            if amount > 0 and math.isfinite(amount) and new_until > now:
                out.append((k, amount, self.ceiling.get(k, math.inf), new_until))
        return out

    def _profile_at(self, t: float) -> dict[str, float]:
        return {k: held_at(p, self.at, self.step_s, self.horizon, t) for k, p in self.profile.items()}

    def held_now(self, t: float) -> dict[str, float]:
        """Per key, what the holds of this claim amount to at `t` if none is released early (its profile)."""
        if not self.profile:
            return dict(self.used) if t < self.horizon else {}
        return self._profile_at(t)

    def held_bound(self, t: float, new_until: float) -> dict[str, float] | None:
        """Per key, the most the replica's run that built this claim can hold at `t` (wall clock): its holds still
        live (the profile), plus its budget of new holds while those can still be live (until `new_until`: every
        one was made before that run stopped placing and lasts at most --max-hold). None without a budget."""
        if self.budget is None:
            return None
        out = self._profile_at(t)
        if t < new_until:
            for k, b in self.budget.items():
                out[k] = out.get(k, 0.0) + b
        return out
