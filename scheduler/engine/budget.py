"""Cluster mode: the most new holds a replica makes between the claims it publishes, and the end-time profile of
the holds it has. Together they bound what a replica that died could still hold at any later time, so the leader
hands the rest of its share to the others at once instead of waiting out the longest hold.

A claim, built at one instant under the ledger's lock, says: the holds live now end as `profile` says, and from
now on at most `budget[key]` more will be made on each key. The replica keeps that promise until a *later* claim is
acknowledged by etcd; a put whose outcome is unknown may have landed, so its budget is kept too. Whichever claim
etcd shows, the holds made since it are within its budget.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

MAX_OPEN = 8  # windows kept while claims go unacknowledged; past this the newest is announced again


@dataclass
class Window:
    """New holds since claim `seq` was built (at `opened`, wall clock): at most `budget[key]` per key (absent:
    none)."""

    seq: int
    budget: dict[str, float]
    opened: float = 0.0
    taken: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Pace:
    """How fast new holds came lately, to size the next budget by."""

    taken: dict[str, float]  # per key, new holds since the newest window opened
    seconds: float  # since it opened
    largest: dict[str, float]  # per key, the largest hold made or needed so far


class NewHolds:
    """The open windows. Not thread-safe: the ledger calls it under its lock."""

    def __init__(self) -> None:
        self.windows: list[Window] = []
        self._seq = 0
        self._room: dict[str, float] = {}
        self.largest: dict[str, float] = {}  # per key, the largest hold made (or refused) so far

    def pace(self, now: float) -> Pace:
        newest = self.windows[-1] if self.windows else Window(0, {}, now)
        return Pace(dict(newest.taken), max(0.0, now - newest.opened), dict(self.largest))

    def open(self, budget: dict[str, float], now: float) -> Window:
        """A window for a claim about to be published; with MAX_OPEN unacknowledged, the newest again (its
        promise stands for a later claim too: holds since then are within its budget)."""
        if len(self.windows) < MAX_OPEN:
            self._seq += 1
            self.windows.append(Window(self._seq, {k: max(0.0, v) for k, v in budget.items()}, now))
            self._refresh()
        return self.windows[-1]

    def acknowledged(self, seq: int) -> None:
        """Claim `seq` is in etcd: windows opened before it no longer bind (etcd shows it, or a later one)."""
        kept = [w for w in self.windows if w.seq >= seq]
        if len(kept) < len(self.windows):
            self.windows = kept
            self._refresh()

    def room(self, key: str) -> float:
        """How much more may be held anew on `key` under every open window."""
        return self._room.get(key, 0.0)

    def saw(self, key: str, amount: float) -> None:
        """A hold of `amount` on `key` was made or needed: the next budgets fit one that large."""
        if amount > self.largest.get(key, 0.0):
            self.largest[key] = amount

    def spend(self, key: str, amount: float, largest: float) -> bool:
        """Count new holds of `amount` in all (the largest one `largest`); True when the newest window has used
        half its budget on `key` (time to publish)."""
        self.saw(key, largest)
        room = math.inf
        for w in self.windows:
            w.taken[key] = w.taken.get(key, 0.0) + amount
            room = min(room, w.budget.get(key, 0.0) - w.taken[key])
        self._room[key] = room
        newest = self.windows[-1]
        return newest.taken[key] > 0.5 * newest.budget.get(key, 0.0)

    def _refresh(self) -> None:
        keys = {k for w in self.windows for k in (*w.budget, *w.taken)}
        self._room = {k: min(w.budget.get(k, 0.0) - w.taken.get(k, 0.0) for w in self.windows) for k in keys}


def end_profile(items: Iterable[tuple[str, float, float]], now: float, step_s: float,
                steps: int) -> dict[str, list[float]]:
    """Per key, `out[key][i]`: the amount of `items` (key, amount, end) ending after now + i * step_s, for
    i = 0 .. steps - 1 (so the most that can be held at any time from then on). Items ending after the last edge
    count in every step: whoever reads it keeps the last step's amount until the holds' horizon."""
    hist: dict[str, list[float]] = {}
    for key, amount, end in items:
        if end <= now or amount <= 0:
            continue
        row = hist.get(key)
        if row is None:
            row = hist[key] = [0.0] * (steps + 1)
        row[min(steps, math.ceil((end - now) / step_s))] += amount  # ends after edges 0 .. that - 1
    out = {}
    for key, row in hist.items():
        after, total = [0.0] * steps, 0.0
        for i in range(steps - 1, -1, -1):
            total += row[i + 1]
            after[i] = total
        out[key] = after
    return out


def held_at(profile: list[float], since: float, step_s: float, horizon: float, t: float) -> float:
    """The most a claim's holds on one key can amount to at time `t`: its profile's step for `t` (built at `since`
    with edges every `step_s`), the last step until `horizon`, nothing after."""
    if not profile or t >= horizon:
        return 0.0
    i = max(0, math.floor((t - since) / step_s))
    return profile[min(i, len(profile) - 1)]
