"""Replicas behind gRPC's own client-side load balancing: a round_robin channel over a static list of replicas
spreads calls over all of them, and keeps serving when one goes away (docs/production.md shows the same client)."""

from __future__ import annotations

from pathlib import Path

import grpc

from scheduler.service.client import Client
from scheduler.service.server import ControlPlane
from scheduler.v1 import types_pb2

TINY = Path(__file__).resolve().parent.parent / "topology" / "tiny.yaml"
ROUND_ROBIN = [("grpc.lb_policy_name", "round_robin")]


def test_round_robin_over_replicas_uses_every_one_and_survives_losing_one():
    replicas = [ControlPlane(TINY, port=0, hour=lambda: 14).start() for _ in range(3)]
    try:
        target = "ipv4:" + ",".join(f"127.0.0.1:{p.port}" for p in replicas)
        batch = types_pb2.Batch(region="singapore", model="llm-70b", input_tokens=100, output_tokens=10)
        with Client(target, timeout=10, options=ROUND_ROBIN) as c:
            c.wait_ready(10)
            for _ in range(30):
                c.place(batch)
            held = [sum(p.engine.ledger.snapshot().values()) for p in replicas]
            assert all(h > 0 for h in held), held  # every replica took some of the placements
            replicas[0].stop(0)
            answered = 0
            for _ in range(20):
                try:
                    c.place(batch, dry_run=True)
                    answered += 1
                except grpc.RpcError as e:  # at most the calls already on their way to the stopped one
                    assert e.code() == grpc.StatusCode.UNAVAILABLE
            assert answered >= 10  # the two live replicas carry on
    finally:
        for p in replicas:
            p.stop(0)
