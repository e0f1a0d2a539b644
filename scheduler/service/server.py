"""The control plane assembled: placement, topology and operator servicers, grpc.health.v1, reflection, the reload
watcher, behind one interceptor (request ids, tokens, limits, metrics; see gate.py), optionally over TLS, with
Prometheus metrics on a port of their own.

One `ControlPlane` is one server process's worth of state: an engine (topology snapshot + capacity ledger) fed by
one topology file. Tests and `scheduler demo` run it in-process on a free loopback port; `scheduler serve` runs
it until SIGTERM/SIGINT. It refuses to listen on a non-loopback address without TLS and tokens unless told
`insecure=True`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from scheduler.engine import knapsack
from scheduler.engine.core import Engine, china_hour
from scheduler.model.loader import load_topology
from scheduler.service.gate import Gate, Limits
from scheduler.service.metrics import Metrics
from scheduler.service.operator import OperatorServicer
from scheduler.service.placement import MAX_BATCHES, PlacementServicer
from scheduler.service.reload import FileWatcher
from scheduler.service.security import TlsFiles, TokenStore, check_exposure
from scheduler.service.state import TopologyState, build_catalog
from scheduler.service.topology import TopologyServicer
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
SPARE_THREADS = 4  # beyond the working ones: turn calls away fast, answer health checks, while all are busy


class ControlPlane:
    """Build with a topology file (LoadError if it is invalid), `start()`, then `stop()`; also a context manager."""

    def __init__(self, topology: str | Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 workers: int = DEFAULT_WORKERS, poll_interval_s: float = 0.5,
                 hour: Callable[[], int] = china_hour, *,
                 tls: TlsFiles | None = None, tokens: TokenStore | None = None, insecure: bool = False,
                 max_message_bytes: int = MAX_MESSAGE_BYTES, max_batch: int = MAX_BATCHES,
                 max_concurrent: int | None = None, default_deadline_s: float | None = DEFAULT_DEADLINE_S,
                 metrics_port: int | None = None, metrics_host: str = "127.0.0.1"):
        """`workers`: calls at work at once (and `max_concurrent`'s default); past `max_concurrent`, calls fail
        fast with RESOURCE_EXHAUSTED. `metrics_port`: None for no metrics endpoint, 0 for any free port."""
        host = host.strip("[]")  # "[::1]" and "::1" alike
        check_exposure(host, tls is not None, tokens is not None, insecure)
        for name, value in (("workers", workers), ("max_message_bytes", max_message_bytes),
                            ("max_batch", max_batch), ("max_concurrent", max_concurrent or 1)):
            if value < 1:
                raise ValueError(f"{name}: must be at least 1, got {value}")
        if default_deadline_s is not None and not default_deadline_s >= 0:
            raise ValueError(f"default_deadline_s: must be >= 0, got {default_deadline_s}")
        loaded = load_topology(topology)
        engine = Engine(build_catalog(loaded), hour=hour)
        knapsack.warm()  # compiled before serving, so the first PlaceBatch does not wait for it
        self.state = TopologyState(engine, str(loaded.path))
        self.watcher = FileWatcher(self.state, loaded.path, interval=poll_interval_s)
        self.metrics = Metrics(self.state)
        self._metrics_port = metrics_port
        self._metrics_host = metrics_host
        concurrent = max_concurrent or workers
        max_watchers = max(1, workers // 4)
        threads = max(workers, concurrent) + max_watchers + SPARE_THREADS
        self.limits = Limits(max_concurrent=concurrent, default_deadline_s=default_deadline_s or None)
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rpc"),
            interceptors=[Gate(tokens, self.limits, self.metrics)],
            options=[("grpc.max_receive_message_length", max_message_bytes),
                     ("grpc.max_send_message_length", max_message_bytes),
                     ("grpc.so_reuseport", 0)],
            # Never queue a call behind busy threads: past this many, grpc answers RESOURCE_EXHAUSTED itself.
            maximum_concurrent_rpcs=threads,
        )
        placement_pb2_grpc.add_PlacementServiceServicer_to_server(
            PlacementServicer(self.state, max_batches=max_batch, metrics=self.metrics,
                              max_response_bytes=max_message_bytes), self.server)
        topology_pb2_grpc.add_TopologyServiceServicer_to_server(
            TopologyServicer(self.state, max_watchers=max_watchers), self.server)
        operator_pb2_grpc.add_OperatorServiceServicer_to_server(OperatorServicer(self.state, self.watcher),
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
        self.watcher.start()
        for name in ("", *SERVICES):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._started = True
        log.info("serving %s (version %s) on %s%s", self.state.path, self.state.version, self.target,
                 " over TLS" if self.tls else "",
                 extra={"version": self.state.version, "target": self.target, "tls": self.tls is not None,
                        "mutual_tls": bool(self.tls and self.tls.client_ca), "metrics_port": self.metrics_port})
        return self

    def stop(self, grace: float = DEFAULT_GRACE_S) -> None:
        """Report NOT_SERVING, stop accepting calls, let in-flight ones finish for up to `grace` seconds."""
        if not self._started:
            self.server.stop(None)
            self.metrics.stop()
            return
        self._started = False
        self.health.enter_graceful_shutdown()
        self.watcher.stop()
        self.state.close()  # open WatchTopology streams end cleanly instead of being cut at the grace deadline
        self.server.stop(grace).wait()
        self.metrics.stop()
        log.info("stopped")

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
