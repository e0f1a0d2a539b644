"""A replica in cluster mode: its run number, its lease, its share, its reports, and (when elected) the leader's
rounds. Placement never waits on anything here: the ledger is told of a new share and the placement path reads
it locally (Ledger.set_shares).

The loop, every half rebalance period: renew the lease (past its TTL without a renewal, the replica stops placing:
etcd may already have let its share go); read its grant, then the others' claims; apply the grant (a shrink at
once) with the lowest ceiling of the others' holds per key (no replica grows a pool past a promise another made
on it); publish its claim (max of limit and holds per key, its holds, their lowest ceilings, when they end,
whether it refused for capacity, what it refused while the fleet had room); keep the others' holds (GetTopology) and their addresses (Release); apply the operator's shared link changes. A second thread campaigns in etcd's
election and, while leading, runs a rebalancing round every period (leader.py).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass

import grpc

from scheduler.cluster import leader as leading
from scheduler.cluster.etcd_client import Etcd
from scheduler.cluster.keys import Keys, amounts, encode
from scheduler.cluster.peers import ClusterPeers
from scheduler.cluster.settings import ClusterSettings
from scheduler.etcdpb import v3election_pb2
from scheduler.service.ids import MAX_BOOT
from scheduler.service.state import known_links, unbuilt

log = logging.getLogger("scheduler.cluster")
DEFAULT_MAX_HOLD_S = 3600.0  # without --max-hold, how long a dead replica's share stays counted
SAFETY = 0.8  # of the lease TTL: the replica stops placing this long after its last renewal
WANTED_DECAY = 0.5  # per publish: what a replica refused lingers in its claim for a few, so the leader sees it


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
        except grpc.RpcError as e:
            self.etcd.close()
            raise OSError(f"--cluster: etcd at {', '.join(settings.endpoints)} did not answer: {e.code().name}") \
                from None
        self.peers = ClusterPeers(self.name, self.boot, self.etcd, self.keys)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lease = 0
        self._renewed = 0.0  # monotonic time of the last successful renewal (sent)
        self._limits: dict[str, float] = {}
        self._others_used: dict[str, float] = {}
        self._others_ceiling: dict[str, float] = {}
        self._wanted: dict[str, float] = {}  # refused while the fleet had room, decayed at each publish
        self._refused_seen = 0
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
        self._apply({})  # nothing placeable until a grant is read
        old = self.etcd.get(self.keys.grants(self.name))  # a restart: the leader still counts our last grant
        if old is not None:
            self._apply(amounts(json.loads(old.value)))
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

    def _new_lease(self) -> None:
        sent = time.monotonic()
        self._lease = self.etcd.grant(self.settings.lease_ttl_s)
        self.etcd.put(self.keys.alive(self.name), encode({"address": self.address, "boot": self.boot}),
                      lease=self._lease)
        self._renewed = sent

    # --- the replica's loop --------------------------------------------------------------------------------------
    def _loop(self) -> None:
        period = self.settings.rebalance_s / 2
        while not self._stop.wait(period):
            try:
                self._step()
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
        else:  # the lease expired (etcd unreachable too long, or a pause): come back as a new member
            self._apply({})
            self._publish()
            self._new_lease()
        # The grant first, then the claims: a grant grows into room another replica's claim gave up, and that
        # claim (read after the grant, etcd being linearizable) carries the ceilings of the holds it keeps.
        grant = self.etcd.get(self.keys.grants(self.name))
        others = self._read_claims()
        if grant is not None and time.monotonic() - self._renewed < SAFETY * self.settings.lease_ttl_s:
            self._apply(amounts(json.loads(grant.value)), others.ceiling)
        else:
            self._apply(self._limits, others.ceiling)
        self._publish()
        self._others_used = others.used
        self.peers.addresses = {self.keys.name_of(e.key): json.loads(e.value)["address"]
                                for e in self.etcd.get_prefix(self.keys.alive())}
        self.peers.room = others.room
        self._sync_links()

    def _read_claims(self) -> Others:
        """What the other replicas last published: their holds, the lowest ceiling of their holds (a claim's
        ceilings count until its holds could have ended, so a dead replica's promises are kept too) and the room
        left in their shares, per key."""
        out = Others({}, {}, {})
        now = time.time()
        for e in self.etcd.get_prefix(self.keys.claims()):
            name = self.keys.name_of(e.key)
            if name == self.name:
                continue
            claim = json.loads(e.value)
            used = amounts(claim.get("used"))
            for k, v in used.items():
                out.used[k] = out.used.get(k, 0.0) + v
            if claim.get("horizon", math.inf) > now:
                for k, c in amounts(claim.get("ceiling")).items():
                    out.ceiling[k] = min(out.ceiling.get(k, math.inf), c)
            out.room[name] = {k: v - used.get(k, 0.0) for k, v in amounts(claim.get("claim")).items()}
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

    def _publish(self) -> None:
        ledger = self.plane.engine.ledger
        used = ledger.own_used()
        claim = {k: max(v, used.get(k, 0.0)) for k, v in self._limits.items()}
        for k, u in used.items():
            claim[k] = max(claim.get(k, 0.0), u)
        refused = self.plane.placement.refused
        hungry, self._refused_seen = refused > self._refused_seen, refused
        wanted = {k: v * WANTED_DECAY for k, v in self._wanted.items() if v * WANTED_DECAY > 1e-3}
        for k, v in self.plane.placement.take_wanted().items():
            wanted[k] = wanted.get(k, 0.0) + v
        self._wanted = wanted
        self.etcd.put(self.keys.claims(self.name), encode({
            "wanted": wanted,
            "claim": claim, "used": {k: v for k, v in used.items() if v > 0}, "horizon": ledger.horizon(),
            "ceiling": ledger.own_ceilings(),
            "hungry": hungry, "boot": self.boot, "at": time.time()}))

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
            try:
                while not self._stop.is_set() and lease == self._lease:
                    r = leading.rebalance(self.etcd, self.keys, key, self._caps(), self.max_hold_s,
                                          self.settings.lease_ttl_s)
                    if r is None:
                        break  # deposed
                    if r.retired:
                        log.warning("shares of %s returned (dead past their holds' end)", ", ".join(r.retired))
                    self._stop.wait(self.settings.rebalance_s)
            except grpc.RpcError as e:
                log.warning("leader round failed: %s", e.code().name)
            finally:
                self.is_leader = False
                self._metrics.cluster_leader.set(0)
