"""A replica in cluster mode: its run number, its lease, its share, its reports, and (when elected) the leader's
rounds. Placement never waits on anything here: the ledger is told of a new share and the placement path reads
it locally (Ledger.set_shares).

The loop, every half rebalance period: renew the lease (and tell the ledger: past 80 % of the TTL without a
renewal it holds nothing new, as etcd may already have let its share go); read its grant (written for this lease),
then the others' claims; apply the grant (a shrink at once) with the lowest ceiling of the others' holds per key (no
replica grows a pool past a promise another made on it); publish its claim (claims.py: what it enforces, its holds,
when they end, its budget of new holds until the next claim, what it refused while the fleet had room); keep the
others' holds (GetTopology) and their addresses (Release); apply the operator's shared link changes. A claim is also
published early when a budget is half used. A second thread campaigns in etcd's election and, while leading, runs
a rebalancing round every period (leader.py) and compacts etcd's history every minute.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import threading
import time
from dataclasses import dataclass

import grpc

from scheduler.cluster import leader as leading
from scheduler.cluster.claims import Claim
from scheduler.cluster.etcd_client import Etcd
from scheduler.cluster.keys import Keys, encode
from scheduler.cluster.peers import ClusterPeers, refuses_connections
from scheduler.cluster.settings import DEFAULT_MAX_HOLD_S, ClusterSettings
from scheduler.engine.budget import Pace
from scheduler.engine.ledger import CABLE_KEY_PREFIX
from scheduler.etcdpb import v3election_pb2
from scheduler.service.ids import MAX_BOOT
from scheduler.service.state import known_links, unbuilt

log = logging.getLogger("scheduler.cluster")
SAFETY = 0.8  # of the lease TTL: the replica stops placing this long after its last renewal
WANTED_DECAY = 0.5  # per half rebalance period: what a replica refused lingers in its claims for a few
BUDGET_SHARE = 0.1  # of its share: the least budget of new holds a claim announces on each key
BUDGET_GROWTH = 1.0  # times its largest hold: a budget fits the largest hold seen (claims go out when half used)
BUDGET_AHEAD_S = 0.1  # a budget covers this long at the last window's pace (claims go out early when it is half used)
PROFILE_STEPS = 32  # steps of a claim's end-time profile (each max(--max-hold / this, half a rebalance period))
EARLY_PUBLISH_S = 0.05  # the least time between claims published early because a budget was half used
EARLIER_RUN = "(earlier run)"  # owner of the holds an earlier run left (restarted without --state-dir)
COMPACT_EVERY_S = 60.0  # the leader compacts etcd's history to what it was this long ago


@dataclass
class Others:
    """The other replicas, as last published in their claims."""

    used: dict[str, float]  # their holds per key, summed
    ceiling: dict[str, float]  # the lowest ceiling of their live holds per key
    room: dict[str, dict[str, float]]  # per replica, per key: its share left unused


class Replica:
    def __init__(self, settings: ClusterSettings, max_hold_s: float | None = None):
        self.settings = settings
        self.name = settings.replica
        self.max_hold_s = max_hold_s or DEFAULT_MAX_HOLD_S
        self.keys = Keys(settings.prefix)
        self.etcd = Etcd(settings.endpoints)
        try:
            self.boot = self.etcd.next_number(self.keys.boot_counter, MAX_BOOT)
            self.etcd.put(self.keys.boot(self.boot), self.name.encode())
            secret = self.etcd.put_if_absent(self.keys.secret, secrets.token_bytes(32))
        except grpc.RpcError as e:
            self.etcd.close()
            raise OSError(f"--cluster: etcd at {', '.join(settings.endpoints)} did not answer: {e.code().name}") \
                from None
        self.peers = ClusterPeers(self.name, self.boot, self.etcd, self.keys, secret, settings.peer_tls)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lease = 0
        self._renewed = 0.0  # monotonic time of the last successful renewal (sent)
        self._limits: dict[str, float] = {}
        self._published = 0.0  # monotonic time of the last claim put
        self._wake = threading.Event()  # a budget is half used: publish a claim soon
        self._others_used: dict[str, float] = {}
        self._others_ceiling: dict[str, float] = {}
        self._wanted: dict[str, float] = {}  # refused while the fleet had room, decayed at each publish
        self._refused_seen = 0
        self._hungry_at = -math.inf  # monotonic time it last refused a placement for capacity
        self._links_seen: bytes | None = None
        self._campaign: grpc.Future | None = None
        self.is_leader = False
        self.plane = None

    # --- lifecycle -----------------------------------------------------------------------------------------------
    def start(self, plane) -> None:
        self.plane = plane
        self._metrics = plane.metrics
        self._metrics.cluster_mode()
        self.address = self.settings.advertise or plane.target
        ledger = plane.engine.ledger
        if plane.statedir is None:
            self._carry_earlier_run(ledger)
        ledger.announce(lambda pace: {}, 1.0, 1)  # budgets on: no new hold until a claim announces one
        ledger.budget_low = plane.placement.on_wanted = self._wake.set
        # Nothing placeable until a grant written for this lease is read: the leader counts a restarted replica's
        # earlier run by what that run can still hold, not by its last grant.
        self._apply({})
        self._new_lease()
        plane.state.fleet_used = self.fleet_used
        plane.state.link_listeners.append(self._links_changed)
        self._step()
        self._metrics.cluster_lease_ok.set(1)
        for target, name in ((self._loop, "cluster-loop"), (self._lead, "cluster-leader")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if self._campaign is not None:
            self._campaign.cancel()
        for t in self._threads:
            t.join(5)
        try:
            if self._lease:
                self._publish()  # the last word: what is held and until when
                self.etcd.revoke(self._lease)  # alive key and leadership go at once; the claim stays counted
        except grpc.RpcError:
            pass
        self.peers.close()
        self.etcd.close()

    def _carry_earlier_run(self, ledger) -> None:
        """Without a state directory a restart forgets its holds, which still run: the last claim of its earlier
        run says what they can still amount to, booked again so they stay counted until they end."""
        entry = self.etcd.get(self.keys.claims(self.name))
        if entry is None:
            return
        now = time.time()
        holds = Claim.parse(entry.value).as_holds(now, now + self.max_hold_s + leading.MAX_CLOCK_SKEW_S)
        if holds:
            keys, amounts, ceilings, ends = (list(x) for x in zip(*holds))
            ledger.carry(keys, amounts, ceilings, ends, EARLIER_RUN)
            log.warning("no --state-dir: %d holds of an earlier run kept counted from its last claim", len(holds),
                        extra={"replica": self.name})

    def _new_lease(self) -> None:
        sent = time.monotonic()
        self._lease = self.etcd.grant(self.settings.lease_ttl_s)
        self.etcd.put(self.keys.alive(self.name), encode({"address": self.address, "boot": self.boot}),
                      lease=self._lease)
        self._renewed = sent

    # --- the replica's loop --------------------------------------------------------------------------------------
    def _loop(self) -> None:
        period = self.settings.rebalance_s / 2
        due = time.monotonic() + period
        while not self._stop.is_set():
            woken = self._wake.wait(max(0.0, due - time.monotonic()))
            if self._stop.is_set():
                return
            now = time.monotonic()
            try:
                if now >= due:
                    due = now + period
                    self._step()
                    self._metrics.cluster_claims.labels("period").inc()
                elif woken:  # a budget is half used: a claim now renews it (no more often than EARLY_PUBLISH_S)
                    self._stop.wait(max(0.0, self._published + EARLY_PUBLISH_S - now))
                    self._wake.clear()
                    self._publish()
                    self._metrics.cluster_claims.labels("early").inc()
                    continue
            except grpc.RpcError as e:
                log.warning("etcd: %s", e.code().name, extra={"replica": self.name})
            except Exception:
                log.exception("cluster step failed")
            lapsed = time.monotonic() - self._renewed > SAFETY * self.settings.lease_ttl_s
            if lapsed and self._limits:
                log.error("lease not renewed for %.1f s: placing nothing until etcd answers",
                          time.monotonic() - self._renewed, extra={"replica": self.name})
                self._apply({})
            self._metrics.cluster_lease_ok.set(0 if lapsed else 1)

    def _step(self) -> None:
        sent = time.monotonic()
        if self.etcd.keepalive(self._lease) > 0:
            self._renewed = sent
            self.plane.engine.ledger.renewed(sent + SAFETY * self.settings.lease_ttl_s)
        else:  # the lease expired (etcd unreachable too long, or a pause): come back as a new member
            self._apply({})
            self._publish()
            self._new_lease()
        # The grant first, then the claims: a grant grows into room another replica's claim gave up, and that
        # claim (read after the grant, etcd being linearizable) carries the ceilings of the holds it keeps.
        entry = self.etcd.get(self.keys.grants(self.name))
        grant = leading.Grant.parse(entry.value) if entry is not None else None
        alive = {self.keys.name_of(e.key): (e.lease, json.loads(e.value))
                 for e in self.etcd.get_prefix(self.keys.alive())}
        self._revoke_dead_peers(alive)
        others = self._read_claims({name: lease for name, (lease, _) in alive.items()})
        if grant is not None and grant.lease == self._lease and \
                time.monotonic() - self._renewed < SAFETY * self.settings.lease_ttl_s:
            self._apply(grant.share, others.ceiling)
        else:
            self._apply(self._limits, others.ceiling)
        self._publish()
        self._others_used = others.used
        self.peers.alive({name: (doc["address"], doc["boot"]) for name, (_, doc) in alive.items()})
        self.peers.room = others.room
        self._sync_links()

    def _revoke_dead_peers(self, alive: dict[str, tuple[int, dict]]) -> None:
        """A peer that failed a call and whose port refuses connections is dead: revoke the lease of that run (its
        alive key and any leadership go with it), so its share returns now rather than after the TTL. Its claim
        stays counted as for any run that ended (leader.py: it may have gone on placing `placing_s` after)."""
        for name, run in self.peers.suspects().items():
            lease, doc = alive.get(name, (0, {}))
            if not lease or doc.get("boot") != run or not refuses_connections(doc.get("address", "")):
                continue  # a new run already, or alive as far as this replica can tell
            try:
                self.etcd.revoke(lease)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.NOT_FOUND:  # NOT_FOUND: expired or revoked already
                    raise
            del alive[name]
            self._metrics.cluster_dead_peers.inc()
            log.warning("replica %s refuses connections at %s: its lease revoked", name, doc.get("address"),
                        extra={"replica": self.name})

    def _read_claims(self, alive: dict[str, int]) -> Others:
        """What the other replicas last published: their holds, the lowest ceiling of their holds (a claim's
        ceilings count until its holds could have ended, so a dead replica's promises are kept too) and the room
        left in their shares, per key. A claim from a run that has ended (its lease is not the one alive) counts
        its holds as they end."""
        out = Others({}, {}, {})
        now = time.time()
        for e in self.etcd.get_prefix(self.keys.claims()):
            name = self.keys.name_of(e.key)
            if name == self.name:
                continue
            claim = Claim.parse(e.value)
            used = claim.used if alive.get(name) == claim.lease else claim.held_now(now)
            for k, v in used.items():
                out.used[k] = out.used.get(k, 0.0) + v
            if claim.horizon > now:
                for k, c in claim.ceiling.items():
                    out.ceiling[k] = min(out.ceiling.get(k, math.inf), c)
            out.room[name] = {k: v - claim.used.get(k, 0.0) for k, v in claim.claim.items()}
        return out

    def _caps(self) -> dict[str, float]:
        cat = self.plane.engine.catalog
        return dict(zip(cat.ledger_keys, cat.ledger_capacity.tolist()))

    def _apply(self, grant: dict[str, float], ceilings: dict[str, float] | None = None) -> None:
        """Enforce `grant` as this replica's limits; the rest of each key's capacity is the others' (background
        load for latency), and no key's load may pass the others' `ceilings` (kept as they were if None)."""
        caps = self._caps()
        limits = {k: min(grant.get(k, 0.0), cap) for k, cap in caps.items()}
        background = {k: (0.0 if math.isinf(cap) else max(0.0, cap - limits[k])) for k, cap in caps.items()}
        if ceilings is not None:
            self._others_ceiling = ceilings
        self.plane.engine.ledger.set_shares(limits, background, self._others_ceiling)
        self._limits = limits

    def _budget(self, pace: Pace) -> dict[str, float]:
        """New holds this replica may make per key until its next claim (never more than its share): a tenth of
        its share, or, if more, what it would take in BUDGET_AHEAD_S at its last window's pace, the largest hold
        there, or the largest hold on any pool. It is what a dead replica can hold beyond its
        holds' profile, so small is good; early claims (when half used, or after a refusal it caused) keep it from
        binding."""
        ahead = BUDGET_AHEAD_S / max(EARLY_PUBLISH_S, pace.seconds)  # the last window's pace, this long ahead
        # A hold's size on one pool says what it may be on the others (cables apart: Gbps, not accelerators).
        kinds = {kind: max((v for k, v in pace.largest.items() if k.startswith(CABLE_KEY_PREFIX) == kind),
                           default=0.0) for kind in (False, True)}

        def budget(k: str, share: float) -> float:
            return min(share, max(BUDGET_SHARE * share, pace.taken.get(k, 0.0) * ahead,
                                  BUDGET_GROWTH * pace.largest.get(k, 0.0), kinds[k.startswith(CABLE_KEY_PREFIX)]))

        return {k: budget(k, v) for k, v in self._limits.items() if v > 0}

    def _publish(self) -> None:
        ledger = self.plane.engine.ledger
        step = max(self.settings.rebalance_s / 2, self.max_hold_s / PROFILE_STEPS)
        # What it refused lingers for a few half periods, however often claims go out, so the leader sees it.
        t, period = time.monotonic(), self.settings.rebalance_s / 2
        refused = self.plane.placement.refused
        if refused > self._refused_seen:
            self._refused_seen, self._hungry_at = refused, t
        hungry = t - self._hungry_at < period
        decay = WANTED_DECAY ** ((t - self._published) / period)
        wanted = {k: v * decay for k, v in self._wanted.items() if v * decay > 1e-3}
        for k, v in self.plane.placement.take_wanted().items():
            wanted[k] = wanted.get(k, 0.0) + v
        self._wanted = wanted
        now = ledger.announce(self._budget, step, PROFILE_STEPS)
        used = now.used
        claim = {k: max(v, used.get(k, 0.0)) for k, v in self._limits.items()}
        for k, u in used.items():
            claim[k] = max(claim.get(k, 0.0), u)
        self._published = t
        self.etcd.put(self.keys.claims(self.name), Claim(
            self._lease, self.boot, claim, used, now.ceilings, now.horizon, now.wall, now.step_s, now.profile,
            now.budget, wanted, hungry, SAFETY * self.settings.lease_ttl_s).encode())
        ledger.announced(now.window)

    def fleet_used(self) -> dict[str, float]:
        """Every replica's holds per key: this one's now, the others' as last published."""
        out = dict(self._others_used)
        for k, v in self.plane.engine.ledger.own_used().items():
            out[k] = out.get(k, 0.0) + v
        return out

    # --- the operator's link changes, shared --------------------------------------------------------------------
    def _links_changed(self, overrides: list[tuple[str, bool]]) -> None:
        doc = encode({"overrides": [{"id": i, "up": up} for i, up in overrides]})
        try:
            self.etcd.put(self.keys.links, doc)
            self._links_seen = doc
        except grpc.RpcError:
            log.warning("link change not shared with the other replicas: etcd did not answer")

    def _sync_links(self) -> None:
        entry = self.etcd.get(self.keys.links)
        if entry is None or entry.value == self._links_seen:
            return
        self._links_seen = entry.value
        state = self.plane.state
        wanted = [(x["id"], bool(x["up"])) for x in json.loads(entry.value)["overrides"]]
        known, never = known_links(state.engine.catalog), unbuilt(state.engine.catalog)
        current = dict(state.link_overrides())
        for link, up in wanted:
            if current.get(link) != up and link in known and not (up and link in never):
                state.set_links([link], up)  # tells _links_changed, which writes back the same overrides

    def _compact(self, revision: int) -> tuple[float, int]:
        """Drop etcd's history before `revision` (claims are rewritten several times a second, and etcd keeps
        every version until compacted); the next mark."""
        try:
            self.etcd.compact(revision)
        except grpc.RpcError as e:  # compacted already (by an earlier leader), or etcd busy: next time
            log.info("etcd compaction at %d: %s", revision, e.code().name)
        return time.monotonic(), self.etcd.revision()

    # --- leadership ----------------------------------------------------------------------------------------------
    def _lead(self) -> None:
        while not self._stop.is_set():
            try:
                lease = self._lease
                self._campaign = self.etcd.election.Campaign.future(v3election_pb2.CampaignRequest(
                    name=self.keys.election.encode(), lease=lease, value=self.name.encode()))
                key = self._campaign.result().leader
            except (grpc.RpcError, grpc.FutureCancelledError):
                if self._stop.wait(self.settings.rebalance_s):
                    return
                continue
            self.is_leader = True
            self._metrics.cluster_leader.set(1)
            log.info("leading the cluster", extra={"replica": self.name})
            mark = (time.monotonic(), self.etcd.revision())
            try:
                while not self._stop.is_set() and lease == self._lease:
                    r = leading.rebalance(self.etcd, self.keys, key, self._caps(), self.max_hold_s)
                    if r is None:
                        break  # deposed
                    if r.retired:
                        log.warning("shares of %s returned (dead past their holds' end)", ", ".join(r.retired))
                    if time.monotonic() - mark[0] > COMPACT_EVERY_S:
                        mark = self._compact(mark[1])
                    self._stop.wait(self.settings.rebalance_s)
            except grpc.RpcError as e:
                log.warning("leader round failed: %s", e.code().name)
            finally:
                self.is_leader = False
                self._metrics.cluster_leader.set(0)
