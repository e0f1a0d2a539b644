"""Limits, each turned away with its own status code instead of slowing everyone down: message size, batch size,
the default deadline for calls without one, and the bound on concurrent work (full means fail fast, not queue)."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scheduler.cli import build_parser, main
from scheduler.commands.serve import build, resolve
from scheduler.service.client import Client, error_field
from scheduler.service.security import ConfigError
from scheduler.service.server import ControlPlane
from scheduler.v1 import placement_pb2, types_pb2

TINY = Path(__file__).resolve().parent.parent / "topology" / "tiny.yaml"


def sg(**kw) -> types_pb2.Batch:
    return types_pb2.Batch(**{**dict(region="singapore", model="llm-70b", input_tokens=2000, output_tokens=500), **kw})


def rpc_error(call, *args, **kw) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kw)
    return info.value


def test_messages_over_the_size_limit_are_resource_exhausted_and_reserve_nothing():
    with ControlPlane(TINY, port=0, max_message_bytes=20_000) as plane, Client(plane.target, timeout=10) as c:
        big = [sg(id="x" * 50) for _ in range(1000)]  # ~78 kB of request
        e = rpc_error(c.place_batch, big)
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in e.details()
        # A small request whose answer would be too big: refused before sending, its holds given back.
        few = [sg() for _ in range(150)]
        e = rpc_error(c.place_batch, few)
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and error_field(e) == "batches"
        assert "over the server's 20000-byte message limit; nothing was reserved" in e.details()
        assert plane.engine.ledger.snapshot() == {}
        assert c.place_batch(few[:10]).placed == 10  # within the limit all is well


def test_batch_count_limit_is_configurable():
    with ControlPlane(TINY, port=0, max_batch=5) as plane, Client(plane.target, timeout=10) as c:
        e = rpc_error(c.place_batch, [sg()] * 6, dry_run=True)
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e.details() == "batches: at most 5 batches per call, got 6"
        assert len(c.place_batch([sg()] * 5, dry_run=True).decisions) == 5


def test_calls_without_a_deadline_get_the_default_one():
    # 1 ms: too little for any PlaceBatch (the solver alone is given at least 5 ms), decided before any work.
    with ControlPlane(TINY, port=0, default_deadline_s=0.001) as plane, Client(plane.target, timeout=None) as c:
        e = rpc_error(c.place_batch, [sg()] * 100)
        assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and error_field(e) == "deadline"
        assert plane.engine.ledger.snapshot() == {}
        # A client that sets its own deadline gets that one instead.
        assert c.place_batch([sg()] * 100, dry_run=True, timeout=30).placed == 100
    with ControlPlane(TINY, port=0, default_deadline_s=None) as plane, Client(plane.target, timeout=None) as c:
        assert c.place_batch([sg()] * 100, dry_run=True).placed == 100


def test_a_full_server_fails_fast_with_resource_exhausted_and_health_and_operators_still_answer():
    with ControlPlane(TINY, port=0, workers=4, max_concurrent=1, default_deadline_s=None) as plane, \
            Client(plane.target, timeout=20) as c:
        inside, release = threading.Event(), threading.Event()
        real_place = plane.engine.place

        def slow_place(*args, **kw):
            inside.set()
            assert release.wait(20)
            return real_place(*args, **kw)

        plane.engine.place = slow_place  # the one working slot stays busy until we say so
        result: dict[str, object] = {}
        t = threading.Thread(target=lambda: result.setdefault("resp", c.place(sg(), dry_run=True)))
        t.start()
        try:
            assert inside.wait(20)
            for call in (lambda: c.place(sg(), dry_run=True), lambda: c.get_topology(),
                         lambda: c.place_batch([sg()], dry_run=True)):
                e = rpc_error(call)
                assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and error_field(e) == "server"
                assert e.details().startswith("server: busy with its maximum of 1 concurrent calls")
            health = health_pb2_grpc.HealthStub(c.channel)
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
                health_pb2.HealthCheckResponse.SERVING
            # an operator cutting a cable under full load is not turned away
            assert "cable-a" in c.set_link_status(["cable-a"], up=False).down_cables
            assert "cable-a" not in c.set_link_status(["cable-a"], up=True).down_cables
        finally:
            release.set()
            t.join(20)
            plane.engine.place = real_place
        assert result["resp"].decision.placed
        assert c.get_topology().topology.name == "tiny"  # the slot is free again
        assert plane.metrics.overloaded._value.get() == 3


def serve_args(*extra: str):
    return resolve(build_parser().parse_args(["serve", "--topology", str(TINY), "--port", "0", *extra]))


def test_serve_flags_reach_the_control_plane():
    plane = build(serve_args("--max-message-bytes", "3000", "--max-batch", "2", "--max-concurrent", "3",
                             "--default-deadline", "2.5", "--workers", "2")).start()
    try:
        assert plane.limits.max_concurrent == 3 and plane.limits.default_deadline_s == 2.5
        with Client(plane.target, timeout=10) as c:
            e = rpc_error(c.placement.PlaceBatch, placement_pb2.PlaceBatchRequest(batches=[sg()] * 3), timeout=10)
            assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                               "batches: at most 2 batches per call, got 3")
            e = rpc_error(c.place, sg(id="x" * 4000), dry_run=True)
            assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in e.details()
            assert c.place(sg(), dry_run=True).decision.placed
    finally:
        plane.stop(0)


@pytest.mark.parametrize("flags, message", [
    (["--max-batch", "0"], "--max-batch: must be at least 1"),
    (["--max-message-bytes", "0"], "--max-message-bytes: must be at least 1"),
    (["--max-concurrent", "0"], "--max-concurrent: must be at least 1"),
    (["--default-deadline", "-1"], "--default-deadline: must be >= 0"),
    (["--metrics-port", "70000"], "--metrics-port: must be 0 (off) or a port number"),
    (["--tls-cert", str(TINY)], "TLS: give both --tls-cert and --tls-key"),
    (["--tls-client-ca", str(TINY)], "TLS: --tls-client-ca (mutual TLS) needs --tls-cert and --tls-key"),
    (["--peer-cert", str(TINY)], "TLS: give both --peer-cert and --peer-key"),
    (["--peer-ca", str(TINY)], "TLS: --peer-ca/--peer-cert are for replicas that serve TLS in cluster mode "
                               "(--cluster, --tls-cert)"),
])
def test_bad_limits_are_refused_at_start(flags, message, capsys):
    with pytest.raises(ConfigError, match=re.escape(message)):
        build(serve_args(*flags))
    assert main(["serve", "--topology", str(TINY), "--port", "0", *flags]) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"


def test_peers_are_reached_with_the_replica_s_own_tls_files_unless_told_otherwise():
    from scheduler.commands.serve import cluster_settings

    base = ["--cluster", "http://127.0.0.1:2379", "--replica", "a"]
    assert cluster_settings(serve_args(*base)).peer_tls is None
    tls = ["--tls-cert", "s.pem", "--tls-key", "s.key", "--tls-client-ca", "ca.pem"]
    peer = cluster_settings(serve_args(*base, *tls)).peer_tls
    assert (Path(peer.ca).name, Path(peer.cert).name, Path(peer.key).name) == ("ca.pem", "s.pem", "s.key")
    peer = cluster_settings(serve_args(*base, *tls, "--peer-ca", "p.pem", "--peer-cert", "c.pem", "--peer-key",
                                       "c.key")).peer_tls
    assert (Path(peer.ca).name, Path(peer.cert).name, Path(peer.key).name) == ("p.pem", "c.pem", "c.key")
