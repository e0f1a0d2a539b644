"""Fair streams and bounded connections, against real servers on loopback: per-client limits on open watch
streams, a stream's max age (and the project's client carrying on across it), connections that never finish their
handshake or stay idle being dropped, the connection cap, keepalive enforcement, and a topology watcher whose reads
fail (too many open files) reporting an I/O error rather than a refused edit."""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from scheduler.service.client import Client, error_field
from scheduler.service.security import Principal, TokenStore, hash_token
from scheduler.service.server import ControlPlane
from scheduler.service.topology import END_MAX_AGE, WATCH_END_KEY, peer_host
from scheduler.v1 import topology_pb2, types_pb2

TINY = Path(__file__).resolve().parent.parent / "topology" / "tiny.yaml"
CURRENT = topology_pb2.TopologyEvent.KIND_CURRENT
APPLIED = topology_pb2.TopologyEvent.KIND_APPLIED
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]  # a channel of its own, not one shared in the process
# An HTTP/2 client preface and an empty SETTINGS frame: a connection that completed its handshake, then no call.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")


def eventually(check: Callable[[], object], what: str, within: float = 10.0):
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        time.sleep(0.02)


def sg() -> types_pb2.Batch:
    return types_pb2.Batch(region="singapore", model="llm-70b", input_tokens=2000, output_tokens=500)


def open_watch(client: Client) -> tuple[object, grpc.RpcError | None]:
    stream = client.watch_topology(timeout=20)
    try:
        assert next(stream).kind == CURRENT
        return stream, None
    except grpc.RpcError as e:
        return stream, e


def closed_now(sock: socket.socket) -> bool:
    """Whether the server has closed `sock` (EOF or reset), reading whatever it sent without waiting."""
    sock.setblocking(False)
    try:
        while sock.recv(65536):
            pass
    except BlockingIOError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        pass
    return True


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed `sock` (EOF or reset), reading whatever it sent; None if still open."""
    start = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            sock.settimeout(max(0.01, seconds - (time.monotonic() - start)))
    except (ConnectionResetError, BrokenPipeError):
        pass
    except TimeoutError:
        return None
    return time.monotonic() - start


# --- fair streams ----------------------------------------------------------------------------------------------
def test_one_client_over_its_watch_limit_is_refused_while_another_still_gets_one():
    store = TokenStore({hash_token("token-a"): Principal("router-a", "router"),
                        hash_token("token-b"): Principal("router-b", "router")})
    # Defaults: 16 workers -> 4 watches in all, 2 per client.
    with ControlPlane(TINY, port=0, tokens=store) as plane, \
            Client(plane.target, timeout=10, token="token-a") as a, \
            Client(plane.target, timeout=10, token="token-b", options=OWN_CONNECTION) as b:
        opened = [open_watch(a) for _ in range(20)]  # one client hoarding, as in the issue (200 there)
        held = [s for s, e in opened if e is None]
        refused = [e for _, e in opened if e is not None]
        assert len(held) == 2 and len(refused) == 18
        for e in refused:
            assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and error_field(e) == "watch"
            assert e.details() == ("watch: at most 2 open watches per client (token router-a); close one, "
                                   "or retry later")
        other, error = open_watch(b)
        assert error is None, error  # another client still gets a slot
        assert plane.topology.open_watches() == {"token router-a": 2, "token router-b": 1}
        assert plane.metrics.registry.get_sample_value("scheduler_watch_refusals_total",
                                                       {"limit": "per_client"}) == 18
        for s in (*held, other):
            s.cancel()
        eventually(lambda: not plane.topology.open_watches(), "every cancelled watch gives its slot back")


def test_without_tokens_a_watch_counts_against_the_peer_address():
    assert peer_host("ipv4:10.0.0.7:53122") == "10.0.0.7"
    assert peer_host("ipv6:%5B::1%5D:53122") == peer_host("ipv6:[::1]:53122") == "::1"
    with ControlPlane(TINY, port=0, max_watches=8, max_watches_per_client=3) as plane, \
            Client(plane.target, timeout=10) as one, Client(plane.target, timeout=10, options=OWN_CONNECTION) as two:
        held = [open_watch(one)[0], open_watch(two)[0], open_watch(one)[0]]  # two connections, one address
        _, error = open_watch(two)
        assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error.details().startswith("watch: at most 3 open watches per client (peer 127.0.0.1)")
        for s in held:
            s.cancel()


def test_a_watch_ends_cleanly_at_its_max_age_and_the_client_carries_on_from_the_served_version(tmp_path):
    path = tmp_path / "topology.yaml"
    path.write_text(TINY.read_text())
    with ControlPlane(path, port=0, max_stream_age_s=1.0, poll_interval_s=0.05) as plane, \
            Client(plane.target, timeout=10) as client:
        # A plain grpc stream: ended by the server, with OK and the reason in the trailers.
        raw = client.topology.WatchTopology(topology_pb2.WatchTopologyRequest(), timeout=10)
        started = time.monotonic()
        events = list(raw)
        assert 0.85 <= time.monotonic() - started < 3.0
        assert [e.kind for e in events] == [CURRENT] and raw.code() == grpc.StatusCode.OK
        assert dict(raw.trailing_metadata())[WATCH_END_KEY] == END_MAX_AGE

        watch = client.watch_topology(timeout=30)
        first = next(watch)
        assert first.kind == CURRENT and first.topology_version == plane.state.version
        seen = [first]
        for old, new in ((64, 96), (96, 128)):
            time.sleep(1.2)  # past the stream's max age: the server has ended it
            assert plane.topology.open_watches() == {}
            before = plane.state.version
            pool = "{accelerator: ascend-910b, count: %d}"
            assert pool % old in path.read_text()
            path.write_text(path.read_text().replace(pool % old, pool % new, 1))
            event = next(watch)  # across a new stream, opened by the client itself
            seen.append(event)
            assert event.topology_version == plane.state.version != before
            assert event.kind in (CURRENT, APPLIED) and event.reload.ok
        assert watch.reconnects >= 2
        assert len({e.topology_version for e in seen}) == len(seen)  # nothing repeated across reconnects
        watch.cancel()
        eventually(lambda: not plane.topology.open_watches(), "the cancelled watch gives its slot back")


# --- connections ------------------------------------------------------------------------------------------------
def test_connections_that_never_send_the_preface_or_stay_idle_are_dropped_within_seconds():
    # Silent sockets against the defaults (a 5 s handshake timeout; grpc's own is 120 s); a connection that sent
    # its preface, then no call, against a server whose idle limit is shortened to 1 s.
    with ControlPlane(TINY, port=0) as plane, ControlPlane(TINY, port=0, max_connection_idle_s=1.0) as short, \
            Client(plane.target, timeout=10) as client:
        client.wait_ready()
        connected = time.monotonic()
        silent = [socket.create_connection(("127.0.0.1", plane.port), timeout=5) for _ in range(4)]
        idle = socket.create_connection(("127.0.0.1", short.port), timeout=5)
        idle.sendall(PREFACE)
        try:
            assert (closed_within(idle, 4.0) or 99) < 4.0  # GOAWAY, then closed
            for sock in silent:
                closed_within(sock, max(0.01, 7.0 - (time.monotonic() - connected)))
            assert 4.0 < time.monotonic() - connected < 7.0
            assert all(closed_now(sock) for sock in silent)
            assert client.place(sg(), dry_run=True).decision.placed  # the real client was never disturbed
        finally:
            for sock in (*silent, idle):
                sock.close()


def test_connections_past_the_cap_are_closed_at_once_while_open_ones_keep_working():
    with ControlPlane(TINY, port=0, max_connections=4) as plane, Client(plane.target, timeout=10) as client:
        client.wait_ready()
        socks = [socket.create_connection(("127.0.0.1", plane.port), timeout=5) for _ in range(8)]
        try:
            time.sleep(0.5)
            assert sum(closed_now(s) for s in socks) >= 5  # 4 allowed, one of them the client's
            assert client.place(sg(), dry_run=True).decision.placed
        finally:
            for s in socks:
                s.close()


def test_the_server_enforces_keepalive():
    plane = ControlPlane(TINY, port=0, max_stream_age_s=60)
    try:
        options = dict(plane.options)
    finally:
        plane.stop(0)
    assert options["grpc.keepalive_time_ms"] > 0 and options["grpc.keepalive_timeout_ms"] > 0
    assert options["grpc.http2.max_ping_strikes"] > 0 and options["grpc.keepalive_permit_without_calls"] == 1
    # The project's client pings (30 s) no more often than the server allows.
    assert options["grpc.http2.min_ping_interval_without_data_ms"] <= 30_000
    assert options["grpc.server_handshake_timeout_ms"] == 5_000 and options["grpc.max_connection_idle_ms"] > 0
    # A connection recycled for its age lets a watch stream run to its own max age first.
    assert options["grpc.max_connection_age_grace_ms"] > 60_000 and options["grpc.max_connection_age_ms"] > 0


# --- the topology watcher -------------------------------------------------------------------------------------------
def test_a_watcher_io_error_is_its_own_event_and_metric_never_a_refused_edit(tmp_path, monkeypatch, caplog):
    path = tmp_path / "topology.yaml"
    path.write_text(TINY.read_text())
    caplog.set_level(logging.INFO, logger="scheduler.reload")
    emfile = OSError(errno.EMFILE, "Too many open files")

    def events() -> list[str | None]:
        return [getattr(r, "event", None) for r in caplog.records if r.name == "scheduler.reload"]

    with ControlPlane(path, port=0, poll_interval_s=0.05) as plane, Client(plane.target, timeout=10) as client:
        value = plane.metrics.registry.get_sample_value
        served = plane.state.version

        def errors() -> float:
            return value("scheduler_topology_watch_errors_total") or 0.0

        def failing(method: str):
            real = getattr(Path, method)

            def read(self, *args, **kw):
                if self == path:
                    raise emfile
                return real(self, *args, **kw)

            return read

        # The poll's own read fails (the case in the issue: EMFILE under a flood of connections).
        with monkeypatch.context() as m:
            m.setattr(Path, "read_bytes", failing("read_bytes"))
            eventually(lambda: errors() >= 3, "failed reads are counted")
            answer = client.reload_topology()  # an operator's reload meanwhile: told, but nothing refused
            assert not answer.result.ok and answer.result.errors[0].message == "cannot read: Too many open files"
        eventually(lambda: "topology_watch_recovered" in events(), "the watcher notices the file reads again")
        # The file reads, then the loader's read of an edit fails: still an I/O error, not a bad edit.
        edited = path.read_text().replace("count: 64}", "count: 96}", 1)
        with monkeypatch.context() as m:
            m.setattr(Path, "read_text", failing("read_text"))
            before = errors()
            path.write_text(edited)
            eventually(lambda: errors() >= before + 2, "the loader's failed read is counted")
            assert plane.state.version == served
        eventually(lambda: plane.state.version != served, "the edit goes live once the file reads")

        assert value("scheduler_topology_reload_failures_total") == 0
        assert value("scheduler_topology_reloads_total", {"result": "refused"}) == 0
        assert value("scheduler_topology_reloads_total", {"result": "applied"}) == 1
        assert client.get_topology().last_reload.ok
    logged = events()
    assert "topology_edit_refused" not in logged
    assert not any("edit refused" in r.getMessage() for r in caplog.records)
    assert logged.count("topology_watch_error") == 2  # once per failure, not once per poll
    assert logged.count("topology_watch_recovered") == 2
    error = next(r for r in caplog.records if getattr(r, "event", None) == "topology_watch_error")
    assert error.levelno == logging.WARNING and error.errno == errno.EMFILE
    assert error.getMessage().startswith(f"topology watcher: cannot read {path}: Too many open files; not an edit")


@pytest.mark.parametrize("fd_limit, expected", [(1024, 768), (65536, 57344), (100, 16)])
def test_the_connection_cap_leaves_descriptors_for_the_rest(fd_limit, expected):
    from scheduler.service.server import default_max_connections
    assert default_max_connections(fd_limit) == expected
