"""The control plane assembled: placement + topology servicers, grpc.health.v1, reflection, the reload watcher.

One `ControlPlane` is one server process's worth of state: an engine (topology snapshot + capacity ledger) fed by
one topology file. Tests and `scheduler demo` run it in-process on a free loopback port; `scheduler serve` runs
it until SIGTERM/SIGINT.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from scheduler.engine.core import Engine, china_hour
from scheduler.model.loader import load_topology
from scheduler.service.placement import PlacementServicer
from scheduler.service.reload import FileWatcher
from scheduler.service.state import TopologyState, build_catalog
from scheduler.service.topology import TopologyServicer
from scheduler.v1 import placement_pb2, placement_pb2_grpc, topology_pb2, topology_pb2_grpc

log = logging.getLogger("scheduler.server")

PLACEMENT_SERVICE = placement_pb2.DESCRIPTOR.services_by_name["PlacementService"].full_name
TOPOLOGY_SERVICE = topology_pb2.DESCRIPTOR.services_by_name["TopologyService"].full_name
SERVICES = (PLACEMENT_SERVICE, TOPOLOGY_SERVICE)
DEFAULT_PORT = 50051
DEFAULT_WORKERS = 16
DEFAULT_GRACE_S = 5.0
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a 10,000-batch PlaceBatch answer is a few MB


class ControlPlane:
    """Build with a topology file (LoadError if it is invalid), `start()`, then `stop()`; also a context manager."""

    def __init__(self, topology: str | Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 workers: int = DEFAULT_WORKERS, poll_interval_s: float = 0.5,
                 hour: Callable[[], int] = china_hour):
        loaded = load_topology(topology)
        engine = Engine(build_catalog(loaded), hour=hour)
        self.state = TopologyState(engine, str(loaded.path))
        self.watcher = FileWatcher(self.state, loaded.path, interval=poll_interval_s)
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc"),
            options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.so_reuseport", 0)],
        )
        placement_pb2_grpc.add_PlacementServiceServicer_to_server(PlacementServicer(self.state), self.server)
        topology_pb2_grpc.add_TopologyServiceServicer_to_server(
            TopologyServicer(self.state, max_watchers=max(1, workers // 4)), self.server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*SERVICES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self.server)
        self.host = host
        self.port = self.server.add_insecure_port(f"{host}:{port}")
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

    def start(self) -> ControlPlane:
        self.server.start()
        self.watcher.start()
        for name in ("", *SERVICES):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._started = True
        log.info("serving %s (version %s) on %s", self.state.path, self.state.version, self.target)
        return self

    def stop(self, grace: float = DEFAULT_GRACE_S) -> None:
        """Report NOT_SERVING, stop accepting calls, let in-flight ones finish for up to `grace` seconds."""
        if not self._started:
            self.server.stop(None)
            return
        self._started = False
        self.health.enter_graceful_shutdown()
        self.watcher.stop()
        self.state.close()  # open WatchTopology streams end cleanly instead of being cut at the grace deadline
        self.server.stop(grace).wait()
        log.info("stopped")

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
