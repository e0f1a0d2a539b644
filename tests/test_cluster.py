"""Cluster mode against a real etcd: replicas filled to exhaustion never hold more than the fleet has, ids are
unique, Release reaches the holder (or answers NOT_FOUND naming it), GetTopology reports fleet-wide holds."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import grpc
import pytest
from conftest import TINY
from etcd_server import free_port
from test_security import Pki

from scheduler.cluster.etcd_client import Etcd
from scheduler.cluster.peers import refuses_connections
from scheduler.cluster.settings import DEFAULT_MAX_HOLD_S, ClusterSettings, PeerTls
from scheduler.service.client import Client
from scheduler.service.convert import batch_from_pb
from scheduler.service.ids import boot_of
from scheduler.service.placement import FORWARDED_KEY
from scheduler.service.security import TlsFiles
from scheduler.service.server import ControlPlane
from scheduler.v1 import placement_pb2, placement_pb2_grpc, types_pb2

BATCH = types_pb2.Batch(region="singapore", model="llm-70b", input_tokens=100, output_tokens=4000, requests=10)


def replicas(etcd, names, peer_tls=None, **kw):
    out = []
    for name in names:
        settings = ClusterSettings.parse(etcd.url, name, lease_ttl_s=2.0, rebalance_s=0.2, peer_tls=peer_tls)
        out.append(ControlPlane(TINY, port=0, hour=lambda: 14, cluster=settings, max_hold_s=3600, **kw).start())
    return out


def wait_for(check, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def fleet_holds(planes):
    out: dict[str, float] = {}
    for p in planes:
        for k, v in p.engine.ledger.own_used().items():
            out[k] = out.get(k, 0.0) + v
    return out


# Its SLO holds on tiny's zhongwei only up to ~43 of the pool's 57.6 accelerators: a promise that binds.
TIGHT = types_pb2.Batch(region="singapore", model="llm-70b", input_tokens=100, output_tokens=4000, requests=10,
                        ttft_ms=78)


def granted(planes) -> bool:
    return all(p.engine.ledger.shares() and sum(p.engine.ledger.shares().values()) > 0 for p in planes)


def fill(client: Client, rounds: int = 400) -> list[int]:
    ids = []
    for _ in range(rounds):
        try:
            ids += client.place(BATCH).decision.reservation_ids
        except grpc.RpcError as e:
            assert e.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.FAILED_PRECONDITION), e
    return ids


@pytest.mark.parametrize("n", [2, 3])
def test_replicas_filled_to_exhaustion_never_exceed_capacity(etcd, n):
    planes = replicas(etcd, [f"r{i}" for i in range(n)])
    try:
        caps = planes[0].engine.capacities(planes[0].engine.catalog)
        wait_for(lambda: all(p.engine.ledger.shares() and sum(p.engine.ledger.shares().values()) > 0
                             for p in planes))
        clients = [Client(p.target, timeout=10) for p in planes]
        ids = []
        for _ in range(3):  # rounds, so the leader moves shares to where the demand is
            for c in clients:
                ids += fill(c, 60)
                held = fleet_holds(planes)
                assert all(held[k] <= caps[k] + 1e-6 for k in held), held
        assert len(set(ids)) == len(ids)  # unique across replicas
        assert sum(fleet_holds(planes).values()) > 0
        # GetTopology on any replica reports every replica's holds (as last published: within a period)
        time.sleep(0.5)
        topo = clients[0].get_topology().topology
        reported = {p.key: p.used for s in topo.sites for p in s.pools}
        held = fleet_holds(planes)
        assert all(reported[k] == pytest.approx(held.get(k, 0.0)) for k in reported)
        for c in clients:
            c.close()
    finally:
        for p in planes:
            p.stop(0)


def test_release_across_replicas_reaches_the_holder_or_names_it(etcd):
    a, b = replicas(etcd, ["a", "b"])
    try:
        wait_for(lambda: all(p.engine.ledger.shares() and sum(p.engine.ledger.shares().values()) > 0
                             for p in (a, b)))
        with Client(a.target, timeout=10) as ca, Client(b.target, timeout=10) as cb:
            held_a = ca.place(BATCH).decision.reservation_ids
            held_b = cb.place(BATCH).decision.reservation_ids
            wait_for(lambda: len(b.cluster.peers.addresses) == 2)
            assert cb.release(list(held_a)).released == len(held_a)  # passed on to a
            assert a.engine.ledger.own_used() == {} or sum(a.engine.ledger.own_used().values()) == 0
            assert len(b.engine.ledger.reservations()) == len(held_b)  # b's own untouched
            more = ca.place(BATCH).decision.reservation_ids
            a.stop(0)
            wait_for(lambda: "a" not in b.cluster.peers.addresses)
            with pytest.raises(grpc.RpcError) as e:
                cb.release(list(more))
            assert e.value.code() == grpc.StatusCode.NOT_FOUND and "'a'" in e.value.details()
    finally:
        a.stop(0)
        b.stop(0)


def test_no_replica_grows_a_pool_past_a_promise_another_made_on_it(etcd):
    """a's tight-SLO hold caps zhongwei's load below its capacity (its ceiling); b, filling the pool with lax
    batches, must keep the fleet-wide load within it, though its own share alone would allow more."""
    a, b = replicas(etcd, ["a", "b"])
    pool = "zhongwei/ascend-910b#0"
    try:
        wait_for(lambda: granted((a, b)))
        with Client(a.target, timeout=10) as ca, Client(b.target, timeout=10) as cb:
            assert ca.place(TIGHT).decision.site == "zhongwei"
            ceiling = a.engine.ledger.own_ceilings()[pool]
            capacity = a.engine.capacities(a.engine.catalog)[pool]
            assert ceiling < 0.8 * capacity  # the promise binds well below the pool's capacity
            wait_for(lambda: b.engine.ledger.promised_ceilings([pool])[0] == pytest.approx(ceiling))
            for _ in range(4):  # rounds, so the leader moves zhongwei's share to b, where the demand is
                fill(cb, 40)
                held = fleet_holds((a, b))
                assert held[pool] <= ceiling + 1e-6, (held[pool], ceiling)
                time.sleep(0.5)
            assert fleet_holds((a, b))[pool] > 0.5 * ceiling  # b did fill the pool, up to the promise
    finally:
        a.stop(0)
        b.stop(0)


def test_a_place_its_share_cannot_hold_goes_to_the_replica_with_room(etcd):
    """Shares move about once a second; in between, a replica whose share is used up passes a Place on to the
    replica with the most room left for it, instead of refusing while the fleet has room."""
    planes = []
    for name in ("a", "b"):
        settings = ClusterSettings.parse(etcd.url, name, lease_ttl_s=8.0, rebalance_s=4.0)
        planes.append(ControlPlane(TINY, port=0, hour=lambda: 14, cluster=settings, max_hold_s=3600,
                                   metrics_port=0).start())
    a, b = planes
    try:
        wait_for(lambda: all(p.engine.ledger.shares() and sum(p.engine.ledger.shares().values()) > 0
                             for p in planes) and max(a.cluster.peers.room.get("b", {"": 0}).values()) > 0, timeout=30)
        share_a = sum(v for k, v in a.engine.ledger.shares().items() if not k.startswith("cable:"))
        with Client(a.target, timeout=10) as ca:
            started = time.monotonic()
            ids = fill(ca, 200)  # through a only, all within one rebalance period
            # A burst faster than claims go out (50 ms apart at most) meets the budgets of new holds, which grow
            # with each claim: what is refused meanwhile is placed a moment later (a router retries), still within
            # the period.
            idle = 0
            while idle < 3 and time.monotonic() - started < 2.0:
                time.sleep(0.1)
                more = fill(ca, 20)
                ids += more
                idle = 0 if more else idle + 1
            assert time.monotonic() - started < 4.0
            held_here = sum(a.engine.ledger.own_used().values())
            share_a = max(share_a, sum(v for k, v in a.engine.ledger.shares().items() if not k.startswith("cable:")))
            passed = [i for i in ids if boot_of(i) == b.cluster.boot]
            assert passed and held_here <= share_a + 1e-6  # a kept to its share; b placed the rest
            assert a.metrics.cluster_passed_on.labels("placed")._value.get() >= 1
            # what is left is at most a batch's worth per share: the two shares' remainders, each too small alone
            # (the leader moves them to where the demand is, at its next round)
            fleet = fleet_holds(planes)
            load = a.engine.decide_at(batch_from_pb(BATCH), {}, 14).load
            caps = a.engine.capacities(a.engine.catalog)
            assert all(caps[k] - fleet.get(k, 0.0) < 2 * load for k in caps if not k.startswith("cable:"))
            assert ca.release(passed).released == len(passed)  # released through a, at b
            assert sum(b.engine.ledger.own_used().values()) == pytest.approx(0.0, abs=1e-6)
    finally:
        for p in planes:
            p.stop(0)


def test_get_topology_reports_the_promises_a_pool_carries(etcd):
    a, b = replicas(etcd, ["a", "b"])
    pool = "zhongwei/ascend-910b#0"
    try:
        wait_for(lambda: granted((a, b)))
        with Client(a.target, timeout=10) as ca, Client(b.target, timeout=10) as cb:
            ca.place(TIGHT)
            ceiling = a.engine.ledger.own_ceilings()[pool]

            def info(c):
                return {p.key: p for s in c.get_topology().topology.sites for p in s.pools}

            mine = info(ca)[pool]
            assert mine.ceiling_here == pytest.approx(ceiling) and mine.ceiling == pytest.approx(ceiling)
            wait_for(lambda: info(cb)[pool].HasField("ceiling"))
            theirs = info(cb)[pool]
            assert theirs.ceiling == pytest.approx(ceiling) and not theirs.HasField("ceiling_here")
            assert not info(cb)["shaoguan/ascend-910b#0"].HasField("ceiling")
    finally:
        a.stop(0)
        b.stop(0)


def test_release_while_etcd_is_down_says_so_and_frees_what_it_can(etcd):
    """Which replica issued an id comes from etcd; with etcd gone, a Release of another replica's ids answers
    UNAVAILABLE naming the field and still frees this replica's own holds."""
    a, b = replicas(etcd, ["a", "b"])
    try:
        wait_for(lambda: granted((a, b)))
        with Client(a.target, timeout=10) as ca, Client(b.target, timeout=10) as cb:
            theirs = list(ca.place(BATCH).decision.reservation_ids)
            mine = list(cb.place(BATCH).decision.reservation_ids)
            etcd.stop()
            with pytest.raises(grpc.RpcError) as e:
                cb.release(theirs + mine)
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
            assert e.value.details().startswith(f"reservation_ids: id {theirs[0]}")
            assert f"{len(mine)} other hold(s) released" in e.value.details()
            assert not b.engine.ledger.reservations()  # b's own were freed
            assert len(a.engine.ledger.reservations()) == len(theirs)  # a's untouched
    finally:
        a.stop(0)
        b.stop(0)


def test_a_call_a_peer_passes_on_is_served_beyond_the_concurrency_limit_and_a_forged_one_is_not(etcd):
    """A replica that passes a Place on was admitted by its own limit already; turning it away at the peer (busy)
    stranded it though the peer had room. Only a marker signed with the cluster's secret earns that."""
    a, b = replicas(etcd, ["a", "b"], workers=4, max_concurrent=1, default_deadline_s=None)
    inside, release = threading.Event(), threading.Event()
    real_place = a.engine.place
    first = [True]

    def slow_first_place(*args, **kw):
        if first[0]:
            first[0] = False
            inside.set()
            assert release.wait(20)
        return real_place(*args, **kw)

    a.engine.place = slow_first_place  # a's one working slot stays busy until we say so
    try:
        wait_for(lambda: granted((a, b)))
        with Client(a.target, timeout=20) as ca:
            t = threading.Thread(target=lambda: ca.place(BATCH, dry_run=True))
            t.start()
            assert inside.wait(20)
            stub = placement_pb2_grpc.PlacementServiceStub(ca.channel)
            request = placement_pb2.PlaceRequest(batch=BATCH, dry_run=True)
            signed = b.cluster.peers._metadata([])
            assert stub.Place(request, metadata=signed, timeout=10).decision.placed
            for forged in ([(FORWARDED_KEY, "b")], [(FORWARDED_KEY, "b:" + "0" * 64)]):
                with pytest.raises(grpc.RpcError) as e:
                    stub.Place(request, metadata=forged, timeout=10)
                assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "busy" in e.value.details()
            release.set()
            t.join(20)
    finally:
        release.set()
        a.engine.place = real_place
        a.stop(0)
        b.stop(0)


def test_without_max_hold_a_cluster_replica_still_bounds_holds(etcd):
    """What a dead replica may still hold is bounded by the longest hold it accepts: in cluster mode that bound
    exists without --max-hold too (before, the engine took any hold while the leader assumed 3600 s)."""
    settings = ClusterSettings.parse(etcd.url, "a", lease_ttl_s=2.0, rebalance_s=0.2)
    a = ControlPlane(TINY, port=0, hour=lambda: 14, cluster=settings).start()
    try:
        assert a.engine.max_hold_s == DEFAULT_MAX_HOLD_S
        with Client(a.target, timeout=10) as c:
            long = types_pb2.Batch(region="singapore", model="llm-70b", input_tokens=100, output_tokens=10**7,
                                   requests=1)
            with pytest.raises(grpc.RpcError) as e:
                c.place(long)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "--max-hold" in e.value.details()
    finally:
        a.stop(0)


def test_a_restart_without_a_state_dir_keeps_its_earlier_holds_counted(etcd):
    """The holds a replica made still run after it restarts; without --state-dir it has no record of them, so it
    books what its earlier run's last claim says they can amount to, until they end (before: it forgot them, and
    could place its whole share again on top of them)."""
    (a,) = replicas(etcd, ["a"])
    try:
        wait_for(lambda: granted((a,)))
        with Client(a.target, timeout=10) as c:
            fill(c, 5)
        before = a.engine.ledger.own_used()
        assert sum(before.values()) > 0
        time.sleep(0.5)  # a claim or two with those holds
    finally:
        a.stop(0)
    (again,) = replicas(etcd, ["a"])
    try:
        after = again.engine.ledger.own_used()
        for key, amount in before.items():
            assert after.get(key, 0.0) >= amount - 1e-6, (key, amount, after.get(key))
        assert {r.owner for r in again.engine.ledger.reservations().values()} == {"(earlier run)"}
    finally:
        again.stop(0)


def test_replicas_that_serve_mutual_tls_pass_calls_on_to_each_other_over_it(etcd, tmp_path):
    """Release (and Place) passed on to the holder go over TLS, presenting a client certificate where the peer
    asks for one (before: peers dialled plaintext, so a TLS cluster answered NOT_FOUND naming the holder)."""
    pki = Pki(tmp_path, "peers")
    a, b = replicas(etcd, ["a", "b"], tls=TlsFiles(pki.server_cert, pki.server_key, pki.ca),
                    peer_tls=PeerTls(str(pki.ca), str(pki.client_cert), str(pki.client_key)))
    try:
        wait_for(lambda: granted((a, b)) and len(b.cluster.peers.addresses) == 2)
        creds = dict(ca=pki.ca, cert=pki.client_cert, key=pki.client_key)
        with Client(a.target, timeout=10, **creds) as ca, Client(b.target, timeout=10, **creds) as cb:
            held = ca.place(BATCH).decision.reservation_ids
            assert cb.release(list(held)).released == len(held)  # passed on to a, over mutual TLS
    finally:
        a.stop(0)
        b.stop(0)


def test_refuses_connections_tells_a_closed_port_from_a_listening_one():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        address = f"127.0.0.1:{s.getsockname()[1]}"
        assert not refuses_connections(address)
    assert refuses_connections(address)
    assert not refuses_connections("dns:///replica-b:50051")  # not a plain host:port: left to the TTL


def test_a_peer_found_dead_loses_its_lease_before_its_ttl_runs_out(etcd, tmp_path):
    """kill -9 of a replica: the next call another replica passes to it fails, its port refuses connections,
    and its lease is revoked then (its share returns by what it can still hold), not a TTL later."""
    ttl = 10.0
    settings = ClusterSettings.parse(etcd.url, "a", lease_ttl_s=ttl, rebalance_s=0.5)
    a = ControlPlane(TINY, port=0, hour=lambda: 14, cluster=settings, max_hold_s=3600, metrics_port=0).start()
    port = free_port()
    b = subprocess.Popen([sys.executable, "-m", "scheduler", "serve", "--topology", str(TINY), "--port", str(port),
                          "--cluster", etcd.url, "--replica", "b", "--lease-ttl", str(ttl), "--rebalance-period",
                          "0.5", "--max-hold", "3600", "--log-level", "error", "--drain-grace", "0"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with Client(f"127.0.0.1:{port}", timeout=10) as cb:
            cb.wait_ready(60)
            ids: list[int] = []  # b's own (b passes on what its share cannot hold yet)
            wait_for(lambda: bool(ids.extend(i for i in fill(cb, 1) if boot_of(i) != a.cluster.boot) or ids),
                     timeout=30)
        wait_for(lambda: "b" in a.cluster.peers.addresses)
        b.kill()
        b.wait(10)
        killed = time.monotonic()
        with Client(a.target, timeout=10) as ca:
            with pytest.raises(grpc.RpcError) as refused:
                ca.release(ids)  # passed on to b, which does not answer
            assert refused.value.code() == grpc.StatusCode.NOT_FOUND and "'b'" in refused.value.details()
        alive = Etcd([etcd.endpoint])
        try:
            wait_for(lambda: alive.get(a.cluster.keys.alive("b")) is None, timeout=ttl / 2)
        finally:
            alive.close()
        assert time.monotonic() - killed < ttl
        assert a.metrics.cluster_dead_peers._value.get() == 1
    finally:
        if b.poll() is None:
            b.kill()
        a.stop(0)


def test_a_place_refused_only_by_its_budget_of_new_holds_waits_for_the_next_claim(etcd):
    """Between claims a replica makes new holds only within a budget (what a crash could leave unannounced). A
    burst faster than claims go out meets it with room left in the share: the place waits for the claim that
    renews the budget, so the first refusal comes when the fleet is full, not before."""
    settings = ClusterSettings.parse(etcd.url, "a", lease_ttl_s=8.0, rebalance_s=4.0)  # claims every 2 s at most
    a = ControlPlane(TINY, port=0, hour=lambda: 14, cluster=settings, max_hold_s=3600, metrics_port=0).start()
    try:
        wait_for(lambda: granted([a]))
        with Client(a.target, timeout=10) as c:
            placed = 0
            while True:
                try:
                    c.place(BATCH)
                    placed += 1
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e
                    break
        assert placed > 1 and a.metrics.cluster_budget_short._value.get() >= 1  # the budget bound, and was renewed
        assert not a.engine.decide_at(batch_from_pb(BATCH), fleet_holds([a]), 14).placed  # full: no room left
    finally:
        a.stop(0)
