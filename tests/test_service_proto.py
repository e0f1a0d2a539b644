"""The committed scheduler/v1 code must be exactly what `make proto` generates from proto/scheduler/v1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "scheduler" / "v1"


def test_generated_code_is_not_stale(tmp_path):
    # In a child process, as `make proto` runs it: protoc's bundled C++ protobuf must not share a process with
    # the one OR-Tools loads (the two abort when both are live).
    subprocess.run([sys.executable, str(ROOT / "proto" / "generate.py"), "--out", str(tmp_path)], check=True,
                   capture_output=True, timeout=120)
    fresh = {p.name: p.read_bytes() for p in (tmp_path / "scheduler" / "v1").iterdir() if p.is_file()}
    committed = {p.name: p.read_bytes() for p in COMMITTED.iterdir() if p.is_file()}
    assert {"placement_pb2.py", "placement_pb2_grpc.py", "topology_pb2_grpc.py", "types_pb2.py"} <= set(fresh)
    stale = sorted(n for n in fresh.keys() | committed.keys() if fresh.get(n) != committed.get(n))
    assert not stale, f"scheduler/v1 is stale ({', '.join(stale)}): run `make proto` and commit the result"


def test_generated_package_imports_as_scheduler_v1():
    from scheduler.v1 import placement_pb2_grpc, topology_pb2_grpc

    assert placement_pb2_grpc.scheduler_dot_v1_dot_placement__pb2.__name__ == "scheduler.v1.placement_pb2"
    assert "scheduler.v1.types_pb2" in sys.modules
    assert hasattr(topology_pb2_grpc, "TopologyServiceStub")
