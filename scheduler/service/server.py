"""The control plane assembled: placement, topology and operator servicers, grpc.health.v1, reflection, the reload
watcher, behind one interceptor (request ids, tokens, limits, metrics; see gate.py), optionally over TLS, with
Prometheus metrics on a port of their own.

Connections are bounded at the transport (`transport_options`): a connection must finish its handshake (TLS, then
the HTTP/2 preface and settings) within `handshake_timeout_s`, is closed after `max_connection_idle_s` without a
call and recycled after `max_connection_age_s`; at most `max_connections` are open at once (the rest are closed as
soon as they are accepted, so file descriptors stay free for the topology watcher and the metrics endpoint); and
keepalive is enforced both ways (the server pings quiet connections and drops peers that do not answer, and a
client that pings more often than `MIN_CLIENT_PING_INTERVAL_S` without data is sent away).

One `ControlPlane` is one server process's worth of state: an engine (topology snapshot + capacity ledger) fed by
one topology file. Tests and `scheduler demo` run it in-process on a free loopback port; `scheduler serve` runs
it until SIGTERM/SIGINT. It refuses to listen on a non-loopback address without TLS and tokens unless told
`insecure=True`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from scheduler.cluster.settings import DEFAULT_MAX_HOLD_S
from scheduler.engine.core import Engine, china_hour_now
from scheduler.engine.ledger import Ledger
from scheduler.model.loader import load_topology
from scheduler.service import ids
from scheduler.service.gate import Gate, Limits
from scheduler.service.metrics import Metrics
from scheduler.service.operator import OperatorServicer
from scheduler.service.placement import MAX_BATCHES, PlacementServicer
from scheduler.service.reload import FileWatcher
from scheduler.service.security import TlsFiles, TokenStore, check_exposure
from scheduler.service.state import TopologyState, build_catalog, known_links, unbuilt
from scheduler.service.statedir import StateDir
from scheduler.service.topology import DEFAULT_MAX_STREAM_AGE_S, TopologyServicer
from scheduler.v1 import (operator_pb2, operator_pb2_grpc, placement_pb2, placement_pb2_grpc, topology_pb2,
                          topology_pb2_grpc)

log = logging.getLogger("scheduler.server")

PLACEMENT_SERVICE = placement_pb2.DESCRIPTOR.services_by_name["PlacementService"].full_name
TOPOLOGY_SERVICE = topology_pb2.DESCRIPTOR.services_by_name["TopologyService"].full_name
OPERATOR_SERVICE = operator_pb2.DESCRIPTOR.services_by_name["OperatorService"].full_name
SERVICES = (PLACEMENT_SERVICE, TOPOLOGY_SERVICE, OPERATOR_SERVICE)
DEFAULT_PORT = 50051
DEFAULT_WORKERS = 16
DEFAULT_GRACE_S = 5.0
DEFAULT_DEADLINE_S = 30.0  # for calls whose client set no deadline
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a 10,000-batch PlaceBatch answer is a few MB
PEER_THREADS_PER_SLOT = 2  # cluster mode: threads for calls peers pass on, per --max-concurrent slot
SPARE_THREADS = 4  # beyond the working ones: turn calls away fast, answer health checks, while all are busy
CLOSING_S = 0.05  # between turning new calls away and stopping the server
DEFAULT_DRAIN_S = 2.0  # on SIGTERM: NOT_SERVING, but still taking calls, for this long (load balancers move away)

# Connections (see transport_options).
DEFAULT_HANDSHAKE_TIMEOUT_S = 5.0  # TCP accepted -> TLS done and HTTP/2 settings received, or closed
DEFAULT_MAX_CONNECTION_IDLE_S = 30.0  # no call in flight for this long: GOAWAY, closed (the client reconnects)
DEFAULT_MAX_CONNECTION_AGE_S = 1800.0  # GOAWAY after this long (+-10 % jitter): clients rebalance over replicas
CONNECTION_AGE_GRACE_S = 30.0  # beyond the longest call or watch stream, for calls on a GOAWAY'd connection
KEEPALIVE_TIME_S = 30.0  # the server pings a connection that has been quiet this long...
KEEPALIVE_TIMEOUT_S = 10.0  # ...and closes it (freeing its watch slots) when no answer comes within this
MIN_CLIENT_PING_INTERVAL_S = 10.0  # a client may ping at most this often without data...
MAX_PING_STRIKES = 2  # ...more often this many times over, and it is sent away (GOAWAY too_many_pings)
FD_RESERVE = 256  # descriptors kept back from connections: topology reads, /metrics, logs, grpc's own


def open_file_limit() -> int | None:
    """The soft RLIMIT_NOFILE of this process (None where there is no such limit, e.g. Windows)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def default_max_connections(fd_limit: int | None = None) -> int:
    """Connections allowed at once: the open-file limit less a reserve, so a flood of connections can never take
    the descriptors the topology watcher and the metrics endpoint need."""
    limit = open_file_limit() if fd_limit is None else fd_limit
    if limit is None:
        return 100_000
    return max(16, limit - max(FD_RESERVE, limit // 8))


def transport_options(*, max_message_bytes: int, max_connections: int, handshake_timeout_s: float,
                      max_connection_idle_s: float, max_connection_age_s: float,
                      max_connection_age_grace_s: float) -> list[tuple[str, int]]:
    """grpc core channel arguments of the server (checked to exist in grpcio 1.85's core)."""

    def ms(seconds: float) -> int:
        return max(1, round(seconds * 1000))

    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),
        # A connection that never completes its handshake (never sends the HTTP/2 preface and settings) is closed
        # after this; grpc's default is 120 s, long enough for idle sockets to exhaust the descriptors.
        ("grpc.server_handshake_timeout_ms", ms(handshake_timeout_s)),
        ("grpc.max_allowed_incoming_connections", max_connections),
        ("grpc.max_connection_idle_ms", ms(max_connection_idle_s)),
        ("grpc.max_connection_age_ms", ms(max_connection_age_s)),
        ("grpc.max_connection_age_grace_ms", ms(max_connection_age_grace_s)),
        ("grpc.keepalive_time_ms", ms(KEEPALIVE_TIME_S)),
        ("grpc.keepalive_timeout_ms", ms(KEEPALIVE_TIMEOUT_S)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", ms(MIN_CLIENT_PING_INTERVAL_S)),
        ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
    ]


class ControlPlane:
    """Build with a topology file (LoadError if it is invalid), `start()`, then `stop()`; also a context manager."""

    def __init__(self, topology: str | Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 workers: int = DEFAULT_WORKERS, poll_interval_s: float = 0.5,
                 hour: Callable[[], int] = china_hour_now, *,
                 tls: TlsFiles | None = None, tokens: TokenStore | None = None, insecure: bool = False,
                 max_message_bytes: int = MAX_MESSAGE_BYTES, max_batch: int = MAX_BATCHES,
                 max_concurrent: int | None = None, default_deadline_s: float | None = DEFAULT_DEADLINE_S,
                 metrics_port: int | None = None, metrics_host: str = "127.0.0.1",
                 max_watches: int | None = None, max_watches_per_client: int | None = None,
                 max_stream_age_s: float = DEFAULT_MAX_STREAM_AGE_S, max_connections: int | None = None,
                 handshake_timeout_s: float = DEFAULT_HANDSHAKE_TIMEOUT_S,
                 max_connection_idle_s: float = DEFAULT_MAX_CONNECTION_IDLE_S,
                 max_connection_age_s: float = DEFAULT_MAX_CONNECTION_AGE_S,
                 state_dir: str | Path | None = None, max_hold_s: float | None = None, cluster=None):
        """`workers`: calls at work at once (and `max_concurrent`'s default); past `max_concurrent`, calls fail
        fast with RESOURCE_EXHAUSTED. `metrics_port`: None for no metrics endpoint, 0 for any free port.

        `max_watches`: open WatchTopology streams in all (default a quarter of `workers`, at least 1);
        `max_watches_per_client`: per token name, or per peer address without tokens (default half of
        `max_watches`, at least 1); `max_stream_age_s`: a watch stream is ended (OK) after about this long and
        the client opens a new one. `max_connections` (default: the open-file limit less a reserve),
        `handshake_timeout_s`, `max_connection_idle_s`, `max_connection_age_s`: see `transport_options`.

        `state_dir`: where holds and the operator's link changes are kept across restarts (statedir.py);
        `max_hold_s`: batches that would hold capacity longer are refused; `cluster`: a ClusterSettings
        (scheduler/cluster/settings.py) to share the fleet's capacity with other replicas through etcd."""
        host = host.strip("[]")  # "[::1]" and "::1" alike
        check_exposure(host, tls is not None, tokens is not None, insecure)
        for name, value in (("workers", workers), ("max_message_bytes", max_message_bytes),
                            ("max_batch", max_batch), ("max_concurrent", max_concurrent or 1),
                            ("max_watches", max_watches or 1), ("max_watches_per_client", max_watches_per_client or 1),
                            ("max_connections", max_connections or 1)):
            if value < 1:
                raise ValueError(f"{name}: must be at least 1, got {value}")
        for name, seconds in (("max_stream_age_s", max_stream_age_s), ("handshake_timeout_s", handshake_timeout_s),
                              ("max_connection_idle_s", max_connection_idle_s),
                              ("max_connection_age_s", max_connection_age_s)):
            if not seconds > 0:
                raise ValueError(f"{name}: must be > 0, got {seconds}")
        if default_deadline_s is not None and not default_deadline_s >= 0:
            raise ValueError(f"default_deadline_s: must be >= 0, got {default_deadline_s}")
        if max_hold_s is not None and not max_hold_s > 0:
            raise ValueError(f"max_hold_s: must be > 0, got {max_hold_s}")
        if cluster is not None and max_hold_s is None:
            max_hold_s = DEFAULT_MAX_HOLD_S  # a dead replica's holds are bounded by it: never unbounded in a cluster
        loaded = load_topology(topology)
        self.statedir = StateDir(state_dir) if state_dir is not None else None
        self.cluster = None
        if cluster is not None:
            from scheduler.cluster.replica import Replica  # etcd's stubs only load in cluster mode

            self.cluster = Replica(cluster, max_hold_s=max_hold_s)
            boot = self.cluster.boot
        else:
            boot = ids.random_boot(self.statedir.used_boots() if self.statedir else ())
        if self.statedir is not None:
            self.statedir.add_boot(boot)
            ledger = self.statedir.ledger(ids.first_id(boot))
        else:
            ledger = Ledger(first_id=ids.first_id(boot))
        engine = Engine(build_catalog(loaded), ledger=ledger, hour=hour, max_hold_s=max_hold_s)
        engine.warm()  # compiled before serving, so the first PlaceBatch does not wait for it
        self.state = TopologyState(engine, str(loaded.path))
        if self.statedir is not None:
            self._restore_links(self.statedir.links())
            self.state.link_listeners.append(self.statedir.save_links)
        peers = self.cluster.peers if self.cluster is not None else None
        self.watcher = FileWatcher(self.state, loaded.path, interval=poll_interval_s)
        self.metrics = Metrics(self.state)
        self.watcher.error_listeners.append(self.metrics.on_watch_error)
        self._metrics_port = metrics_port
        self._metrics_host = metrics_host
        concurrent = max_concurrent or workers
        # Each open watch holds a server thread of its own (threads are started as needed, so a generous cap costs
        # nothing until used), beside the ones placements use: watchers can never starve placements.
        max_watchers = max_watches or max(1, workers // 4)
        per_client = max_watches_per_client or max(1, max_watchers // 2)
        threads = max(workers, concurrent) + max_watchers + SPARE_THREADS
        if self.cluster is not None:  # calls passed on by peers are served beyond --max-concurrent (gate.passed_on)
            threads += PEER_THREADS_PER_SLOT * concurrent
        self.limits = Limits(max_concurrent=concurrent, default_deadline_s=default_deadline_s or None)
        longest_call = max(max_stream_age_s, default_deadline_s or DEFAULT_DEADLINE_S)
        self.options = transport_options(
            max_message_bytes=max_message_bytes, max_connections=max_connections or default_max_connections(),
            handshake_timeout_s=handshake_timeout_s, max_connection_idle_s=max_connection_idle_s,
            max_connection_age_s=max_connection_age_s,
            max_connection_age_grace_s=longest_call + CONNECTION_AGE_GRACE_S)
        self.gate = Gate(tokens, self.limits, self.metrics)
        if self.cluster is not None:
            self.gate.passed_on = self.cluster.peers.forwarded_by_peer
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rpc"),
            interceptors=[self.gate],
            options=self.options,
            # Never queue a call behind busy threads: past this many, grpc answers RESOURCE_EXHAUSTED itself.
            maximum_concurrent_rpcs=threads,
        )
        placement_pb2_grpc.add_PlacementServiceServicer_to_server(
            placement := PlacementServicer(self.state, max_batches=max_batch, metrics=self.metrics,
                                           max_response_bytes=max_message_bytes, peers=peers), self.server)
        self.placement = placement
        self.topology = TopologyServicer(self.state, max_watchers=max_watchers, max_per_client=per_client,
                                         max_age_s=max_stream_age_s, metrics=self.metrics)
        topology_pb2_grpc.add_TopologyServiceServicer_to_server(self.topology, self.server)
        operator_pb2_grpc.add_OperatorServiceServicer_to_server(OperatorServicer(self.state, self.watcher, peers),
                                                                self.server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*SERVICES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self.server)
        self.host = host
        self.tls = tls
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if tls is not None:
            self.port = self.server.add_secure_port(address, tls.server_credentials())
        else:
            self.port = self.server.add_insecure_port(address)
        if not self.port:
            raise OSError(f"cannot listen on {host}:{port}")
        self._started = False
        self.draining = False

    def _restore_links(self, saved: list[tuple[str, bool]]) -> None:
        """The operator's link changes from the state dir, applied in the order they were made (ids the topology
        no longer has, or repairs of what it marks unbuilt, are dropped as a reload would)."""
        known, never = known_links(self.engine.catalog), unbuilt(self.engine.catalog)
        for link, up in saved:
            if link in known and not (up and link in never):
                self.state.set_links([link], up)
        if saved:
            log.info("restored %d link changes from %s", len(self.state.overrides), self.statedir.path)

    @property
    def engine(self) -> Engine:
        return self.state.engine

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def metrics_port(self) -> int:
        """The port /metrics is served on (0: not served)."""
        return self.metrics.port

    def start(self) -> ControlPlane:
        if self._metrics_port is not None:
            self.metrics.serve(self._metrics_host, self._metrics_port)
        self.server.start()
        if self.cluster is not None:
            self.cluster.start(self)
        self.watcher.start()
        for name in ("", *SERVICES):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._started = True
        log.info("serving %s (version %s) on %s%s", self.state.path, self.state.version, self.target,
                 " over TLS" if self.tls else "",
                 extra={"version": self.state.version, "target": self.target, "tls": self.tls is not None,
                        "mutual_tls": bool(self.tls and self.tls.client_ca), "metrics_port": self.metrics_port})
        return self

    def drain(self) -> None:
        """Report NOT_SERVING at once (health checks and load balancers send new calls elsewhere) while still
        serving every call that comes; `stop` ends that."""
        if self._started and not self.draining:
            self.draining = True
            self.health.enter_graceful_shutdown()
            log.info("draining: health NOT_SERVING, still serving calls", extra={"target": self.target})

    def stop(self, grace: float = DEFAULT_GRACE_S, drain_s: float = 0.0) -> None:
        """Report NOT_SERVING; keep serving new calls for `drain_s` seconds; then stop accepting calls and let
        in-flight ones finish for up to `grace` seconds."""
        if not self._started:
            self.server.stop(None)
            if self.cluster is not None:
                self.cluster.stop()
            if self.statedir is not None:
                self.statedir.close()
            self.metrics.stop()
            return
        if drain_s > 0:
            self.drain()
            time.sleep(drain_s)
        self._started = False
        self.health.enter_graceful_shutdown()
        self.gate.closing = True
        time.sleep(CLOSING_S)  # calls already on the wire meet the gate's UNAVAILABLE, not grpc's CANCELLED
        self.watcher.stop()
        self.state.close()  # open WatchTopology streams end cleanly instead of being cut at the grace deadline
        self.server.stop(grace).wait()
        if self.cluster is not None:
            self.cluster.stop()
        if self.statedir is not None:
            self.statedir.close()
        self.metrics.stop()
        log.info("stopped")

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
