"""A real etcd for tests and benchmarks: Debian's etcd-server on free loopback ports with a temporary data dir."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import grpc

from scheduler.etcdpb import rpc_pb2, rpc_pb2_grpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EtcdServer:
    """`with EtcdServer() as etcd: etcd.url` — started, ready (a Range answered), stopped and wiped on exit."""

    def __init__(self) -> None:
        self.binary = shutil.which("etcd")
        if self.binary is None:
            raise RuntimeError("etcd is not installed: `apt-get install etcd-server` (make test does it)")
        self.client_port, self.peer_port = free_port(), free_port()
        self.data = Path(tempfile.mkdtemp(prefix="etcd-test-"))
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def start(self, timeout_s: float = 30.0) -> EtcdServer:
        client, peer = f"http://127.0.0.1:{self.client_port}", f"http://127.0.0.1:{self.peer_port}"
        self.proc = subprocess.Popen(
            [self.binary, "--name", "test", "--data-dir", str(self.data / "data"),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"test={peer}", "--initial-cluster-state", "new",
             "--log-level", "error", "--logger", "zap"],
            stdout=subprocess.DEVNULL, stderr=open(self.data / "etcd.log", "wb"))
        channel = grpc.insecure_channel(self.endpoint)
        kv = rpc_pb2_grpc.KVStub(channel)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    kv.Range(rpc_pb2.RangeRequest(key=b"ready"), timeout=1)
                    return self
                except grpc.RpcError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"etcd did not start: {(self.data / 'etcd.log').read_text()[-2000:]}")
                    time.sleep(0.1)
        finally:
            channel.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.data, ignore_errors=True)

    def __enter__(self) -> EtcdServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
