"""Observability against a real server: Prometheus metrics scraped over loopback after a few calls, request ids
(the caller's or the server's own) in the trailers and on every JSON log line written during the call."""

from __future__ import annotations

import io
import json
import logging
import urllib.request
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from scheduler.service import logs
from scheduler.service.client import Client, error_field, request_id
from scheduler.service.server import ControlPlane
from scheduler.v1 import placement_pb2, topology_pb2, types_pb2

TINY = Path(__file__).resolve().parent.parent / "topology" / "tiny.yaml"


def sg(**kw) -> types_pb2.Batch:
    return types_pb2.Batch(**{**dict(region="singapore", model="llm-70b", input_tokens=2000, output_tokens=500), **kw})


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """name + sorted labels -> value, from a real HTTP scrape of /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, metric: str, /, **labels) -> float:
    return samples[metric, tuple(sorted(labels.items()))]


@pytest.fixture
def served(tmp_path):
    path = tmp_path / "topology.yaml"
    path.write_text(TINY.read_text())
    with ControlPlane(path, port=0, hour=lambda: 14, metrics_port=0) as plane, \
            Client(plane.target, timeout=10) as client:
        yield path, plane, client


def test_metrics_are_scraped_over_loopback_after_a_few_calls(served):
    path, plane, c = served
    assert plane.metrics_port > 0
    placed = c.place(sg()).decision
    with pytest.raises(grpc.RpcError):
        c.place(sg(ttft_ms=5))  # no site that fast: FAILED_PRECONDITION, outcome "ttft"
    with pytest.raises(grpc.RpcError):
        c.place(sg(region="mars"))  # INVALID_ARGUMENT, not a placement outcome
    batch = c.place_batch([sg(), sg(region="manila"), sg(requests=1_000_000)])
    unplaced_reason = types_pb2.Reason.Name(batch.decisions[2].reason)[len("REASON_"):].lower()
    path.write_text(path.read_text().replace("pue: 1.15", "pue: 0.5"))
    assert not c.reload_topology().result.ok  # one refused reload
    c.set_link_status(["cable-b"], up=False)

    m = scrape(plane.metrics_port)
    assert value(m, "scheduler_placements_total", rpc="Place", outcome="placed") == 1
    assert value(m, "scheduler_placements_total", rpc="Place", outcome="ttft") == 1
    assert value(m, "scheduler_placements_total", rpc="PlaceBatch", outcome="placed") == 2
    assert value(m, "scheduler_placements_total", rpc="PlaceBatch", outcome=unplaced_reason) == 1
    assert value(m, "scheduler_rpc_duration_seconds_count", method="Place") == 3
    assert value(m, "scheduler_rpc_duration_seconds_count", method="PlaceBatch") == 1
    assert value(m, "scheduler_rpc_duration_seconds_bucket", method="Place", le="+Inf") == 3
    assert value(m, "scheduler_rpc_duration_seconds_sum", method="Place") > 0
    assert value(m, "scheduler_rpc_errors_total", method="Place", code="FAILED_PRECONDITION") == 1
    assert value(m, "scheduler_rpc_errors_total", method="Place", code="INVALID_ARGUMENT") == 1
    assert ("scheduler_rpc_errors_total", (("code", "OK"), ("method", "Place"))) not in m
    assert value(m, "scheduler_topology_reload_failures_total") == 1
    assert value(m, "scheduler_topology_reloads_total", result="refused") == 1
    assert value(m, "scheduler_topology_info", version=plane.state.version, path=str(path), name="tiny") == 1
    assert value(m, "scheduler_topology_loaded_timestamp_seconds") > 1e9
    assert value(m, "scheduler_inflight_calls") == 0
    # Utilization and cable load come from the live ledger: what the placements hold now.
    held = plane.engine.ledger.snapshot()
    for site in ("zhongwei", "shaoguan", "shantou"):
        pool = f"{site}/ascend-910b#0"
        cap = value(m, "scheduler_pool_capacity_accelerators", site=site, pool=pool)
        assert value(m, "scheduler_pool_used_accelerators", site=site, pool=pool) == pytest.approx(held.get(pool, 0))
        assert value(m, "scheduler_site_utilization", site=site) == pytest.approx(held.get(pool, 0) / cap)
        assert value(m, "scheduler_site_up", site=site) == 1
    assert value(m, "scheduler_site_utilization", site=placed.site) > 0
    for cable in ("cable-a", "cable-b"):
        assert value(m, "scheduler_cable_load_gbps", cable=cable) == pytest.approx(held.get(f"cable:{cable}", 0))
        assert value(m, "scheduler_cable_capacity_gbps", cable=cable) == 100
    assert sum(value(m, "scheduler_cable_load_gbps", cable=c) for c in placed.route.cables) > 0
    assert value(m, "scheduler_cable_up", cable="cable-a") == 1 and value(m, "scheduler_cable_up", cable="cable-b") == 0


def test_metrics_port_is_off_unless_asked(tmp_path):
    with ControlPlane(TINY, port=0) as plane:
        assert plane.metrics_port == 0


def test_request_ids_come_back_in_the_trailers_and_on_every_log_line(served, caplog):
    _, plane, c = served
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    caplog.set_level(logging.DEBUG)
    try:
        _, call = c.placement.Place.with_call(placement_pb2.PlaceRequest(batch=sg(), dry_run=True),
                                              metadata=[("x-request-id", "router-sg-1/req-42")], timeout=10)
        assert request_id(call) == "router-sg-1/req-42"
        with pytest.raises(grpc.RpcError) as info:  # errors carry it too, beside the field and version trailers
            c.placement.Place(placement_pb2.PlaceRequest(batch=sg(region="mars")),
                              metadata=[("x-request-id", "req-43")], timeout=10)
        assert request_id(info.value) == "req-43" and error_field(info.value) == "region"
        _, call = c.topology.GetTopology.with_call(topology_pb2.GetTopologyRequest(), timeout=10)
        generated = request_id(call)
        assert generated and len(generated) == 16  # the client helper made one up
        _, call = c.placement.Place.with_call(placement_pb2.PlaceRequest(batch=sg(), dry_run=True),
                                              metadata=[("x-request-id", "bad id with spaces")], timeout=10)
        replaced = request_id(call)
        assert replaced and replaced != "bad id with spaces"  # nonsense is replaced, not echoed into logs
    finally:
        root.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [x for x in lines if x["logger"] == "scheduler.access"]
    assert {x["request_id"] for x in access} >= {"router-sg-1/req-42", "req-43", generated, replaced}
    for x in access:
        assert set(x) >= {"ts", "level", "logger", "msg", "request_id", "method", "code", "ms"}
    assert any(x["request_id"] == "req-43" and x["code"] == "INVALID_ARGUMENT" for x in access)
