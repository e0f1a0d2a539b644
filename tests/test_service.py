"""End to end against a real control plane on loopback: every RPC, health, reflection, each error code, and
concurrent placements that must never overcommit a pool."""

from __future__ import annotations

import math
import threading
from collections import Counter
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from scheduler.engine.core import CABLE_PREFIX, Engine
from scheduler.engine.request import Batch, Reason
from scheduler.model.loader import load_topology
from scheduler.service import convert, errors
from scheduler.service.client import Client, error_decision, error_field, error_version
from scheduler.service.placement import (MAX_BATCHES, MAX_TRAILER_DECISION_BYTES, PlacementServicer,
                                         trailer_decision)
from scheduler.service.server import PLACEMENT_SERVICE, TOPOLOGY_SERVICE, ControlPlane
from scheduler.v1 import placement_pb2, topology_pb2, types_pb2

TINY = Path(__file__).resolve().parent.parent / "topology" / "tiny.yaml"
HOUR = 14


@pytest.fixture(scope="module")
def plane():
    with ControlPlane(TINY, port=0, hour=lambda: HOUR) as p:
        yield p


@pytest.fixture(scope="module")
def shared_client(plane):
    with Client(plane.target, timeout=20) as c:
        c.wait_ready()
        yield c


@pytest.fixture
def client(plane, shared_client):
    plane.engine.ledger.clear()  # every test starts with all capacity free
    yield shared_client
    plane.engine.ledger.clear()


def sg(**kw) -> types_pb2.Batch:
    args = dict(region="singapore", model="llm-70b", input_tokens=2000, output_tokens=500)
    args.update(kw)
    return types_pb2.Batch(**args)


def rpc_error(call, *args, **kw) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kw)
    return info.value


def test_every_engine_reason_has_its_own_api_value():
    assert sorted(types_pb2.Reason.Name(v) for v in convert.REASON_TO_PB.values()) == sorted(
        f"REASON_{r.name}" for r in Reason)


# --- the four placement RPCs ---------------------------------------------------------------------------------
def test_place_carries_the_whole_decision_and_matches_the_engine(plane, client):
    resp = client.place(sg(id="b1"))
    d = resp.decision
    loaded = load_topology(TINY)
    expected = Engine.from_topology(loaded.value, loaded.version).place(
        Batch("singapore", "llm-70b", 2000, 500), hour=HOUR, reserve=False)
    assert resp.topology_version == loaded.version and resp.hour == HOUR
    assert d.placed and d.reason == types_pb2.REASON_OK and d.batch_id == "b1"
    assert (d.site, d.pool) == (expected.site, expected.pool)
    assert tuple(d.route.nodes) == expected.route.nodes and d.route.nodes[0] == "singapore"
    assert tuple(d.route.cables) == expected.route.cables and tuple(d.route.links) == expected.route.edges
    for name, value in [("rtt_ms", expected.rtt_ms), ("ttft_ms", expected.ttft_ms), ("e2e_ms", expected.e2e_ms),
                        ("cost_cny", expected.cost_cny), ("energy_kwh", expected.kwh), ("g_co2", expected.g_co2),
                        ("accelerators", expected.load), ("hold_s", expected.hold_s)]:
        assert getattr(d, name) == pytest.approx(value), name
    assert d.slo.ttft_ms == 1000 and not d.slo.HasField("e2e_ms")  # the region default; e2e unbounded
    assert [a.site for a in d.alternatives] == [a.site for a in expected.alternatives]
    assert len(d.reservation_ids) == 1 + len(expected.route.cables)
    # The capacity is held in the server's ledger, and GetTopology reports it.
    assert plane.engine.ledger.snapshot()[d.pool] == pytest.approx(d.accelerators)
    pools = {p.key: p for s in client.get_topology().topology.sites for p in s.pools}
    assert pools[d.pool].used == pytest.approx(d.accelerators)


def test_place_explains_rejected_sites(client):
    d = client.place(sg(ttft_ms=120), dry_run=True).decision
    assert d.placed and d.site in ("shantou", "shaoguan")
    rejected = {r.site: r for r in d.rejections}
    assert set(rejected) == {"zhongwei"}
    assert rejected["zhongwei"].reason == types_pb2.REASON_TTFT and "> SLO 120 ms" in rejected["zhongwei"].detail


def test_dry_run_and_release(plane, client):
    d = client.place(sg(), dry_run=True).decision
    assert d.placed and not d.reservation_ids and plane.engine.ledger.snapshot() == {}
    held = client.place(sg()).decision
    assert plane.engine.ledger.snapshot()
    resp = client.release(list(held.reservation_ids) + [999_999])
    assert resp.released == len(held.reservation_ids) and resp.topology_version == plane.state.version
    assert plane.engine.ledger.snapshot() == {}


def test_place_batch_keeps_order_and_reports_unplaced(plane, client):
    batches = [sg(id=f"s{i}", input_tokens=100 + i) for i in range(20)]
    batches += [types_pb2.Batch(id=f"m{i}", region="manila", model="llm-70b", input_tokens=300, output_tokens=50)
                for i in range(20)]
    batches.append(sg(id="huge", requests=1_000_000))  # more than every pool together: stays unplaced
    resp = client.place_batch(batches, hour=3)
    assert resp.topology_version == plane.state.version and resp.hour == 3
    assert [d.batch_id for d in resp.decisions] == [b.id for b in batches]
    assert resp.placed == 40 and resp.solver_status in ("OPTIMAL", "FEASIBLE") and resp.method
    huge = resp.decisions[-1]
    assert not huge.placed and huge.reason not in (types_pb2.REASON_OK, types_pb2.REASON_UNSPECIFIED)
    assert huge.message and not huge.site and not huge.reservation_ids
    for d in resp.decisions[:-1]:
        assert d.placed and d.route.nodes[-1] == d.site and d.cost_cny > 0 and d.reservation_ids
    assert resp.cost_cny == pytest.approx(sum(d.cost_cny for d in resp.decisions))
    held = plane.engine.ledger.snapshot()
    by_pool: dict[str, float] = {}
    for d in resp.decisions[:-1]:
        by_pool[d.pool] = by_pool.get(d.pool, 0.0) + d.accelerators
    assert {k: v for k, v in held.items() if not k.startswith(CABLE_PREFIX)} == pytest.approx(by_pool)


def test_get_plan_routes_every_cell(plane, client):
    cells = [types_pb2.DemandCell(region="singapore", model="llm-70b", tokens_per_s=20_000),
             types_pb2.DemandCell(region="manila", model="llm-70b", tokens_per_s=10_000, ttft_ms=800)]
    for policy in ("", "nearest", "cheapest-greedy"):
        p = client.get_plan(cells, hour=HOUR, policy=policy)
        assert p.topology_version == plane.state.version and p.hour == HOUR
        assert p.policy == (policy or "optimal") and [r.cell.region for r in p.rows] == ["singapore", "manila"]
        assert p.rows[1].cell.ttft_ms == 800 and p.rows[1].cell.input_tokens == 2000  # engine default echoed
        for row in p.rows:
            assert row.reason == types_pb2.REASON_OK and row.unserved_tokens_per_s == pytest.approx(0, abs=1e-6)
            assert sum(s.fraction for s in row.shares) == pytest.approx(1)
            assert all(s.ttft_ms <= (row.cell.ttft_ms if row.cell.HasField("ttft_ms") else 1000) for s in row.shares)
        assert p.served_tokens_per_s == pytest.approx(30_000) and p.cost_cny_per_hour > 0
        assert set(p.pool_utilization) == {"zhongwei/ascend-910b#0", "shaoguan/ascend-910b#0",
                                           "shantou/ascend-910b#0"}
    # More demand than the whole fleet: the rest is reported unserved, for want of capacity.
    flood = client.get_plan([types_pb2.DemandCell(region="manila", model="llm-70b", tokens_per_s=1e7)], hour=HOUR)
    (row,) = flood.rows
    assert row.reason == types_pb2.REASON_CAPACITY and 0 < row.unserved_tokens_per_s < 1e7
    assert all(u <= 1 + 1e-9 for u in flood.pool_utilization.values())


# --- topology service, health, reflection ------------------------------------------------------------------------
def test_get_topology_and_watch_start_with_the_current_state(plane, client):
    t = client.get_topology()
    assert t.topology_version == t.topology.version == plane.state.version
    assert t.topology.path == str(TINY) and t.topology.name == "tiny"
    assert [s.id for s in t.topology.sites] == ["zhongwei", "shaoguan", "shantou"]
    assert t.topology.sites[0].pools[0].capacity == pytest.approx(64 * 0.9)
    assert [r.id for r in t.topology.regions] == ["singapore", "manila"] and list(t.topology.models) == ["llm-70b"]
    assert {c.id: c.up for c in t.topology.cables} == {"cable-a": True, "cable-b": True}
    assert t.last_reload.ok and t.last_reload.version == plane.state.version
    stream = client.watch_topology(timeout=10)
    first = next(stream)
    stream.cancel()
    assert first.kind == topology_pb2.TopologyEvent.KIND_CURRENT and first.topology_version == plane.state.version


def test_health_reports_serving(plane, client):
    stub = health_pb2_grpc.HealthStub(client.channel)
    for service in ("", PLACEMENT_SERVICE, TOPOLOGY_SERVICE):
        resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lets_a_stock_client_discover_and_call_every_method(plane, client):
    db = ProtoReflectionDescriptorDatabase(client.channel)
    services = set(db.get_services())
    assert {PLACEMENT_SERVICE, TOPOLOGY_SERVICE, "grpc.health.v1.Health"} <= services
    pool = descriptor_pool.DescriptorPool(db)
    placement = pool.FindServiceByName(PLACEMENT_SERVICE)
    topology = pool.FindServiceByName(TOPOLOGY_SERVICE)
    assert {m.name for m in placement.methods} == {"Place", "PlaceBatch", "GetPlan", "Release"}
    assert {m.name for m in topology.methods} == {"GetTopology", "WatchTopology"}
    assert topology.methods_by_name["WatchTopology"].server_streaming
    # Call Place with message classes built only from what reflection served, not from our generated code.
    method = placement.methods_by_name["Place"]
    request_cls = message_factory.GetMessageClass(method.input_type)
    response_cls = message_factory.GetMessageClass(method.output_type)
    request = request_cls()
    request.batch.region, request.batch.model = "manila", "llm-70b"
    request.batch.input_tokens, request.batch.output_tokens = 1000, 100
    request.dry_run = True
    call = client.channel.unary_unary(f"/{PLACEMENT_SERVICE}/Place", request_serializer=request_cls.SerializeToString,
                                      response_deserializer=response_cls.FromString)
    resp = call(request, timeout=5)
    assert resp.decision.placed and resp.decision.route.nodes[0] == "manila"
    assert resp.topology_version == plane.state.version


# --- errors --------------------------------------------------------------------------------------------------
INVALID = [
    ("unknown region", dict(batch=sg(region="mars")), "region", "region: unknown region 'mars'"),
    ("unknown model", dict(batch=sg(model="gpt-9")), "model", "model: unknown model 'gpt-9'"),
    ("unknown data class", dict(batch=sg(data_class="secret")), "data_class", "data_class: unknown data class"),
    ("negative tokens", dict(batch=sg(input_tokens=-5)), "input_tokens", "input_tokens: must be an integer"),
    ("zero tokens", dict(batch=sg(input_tokens=0, output_tokens=0)), "output_tokens", "output_tokens: a batch"),
    ("negative requests", dict(batch=sg(requests=-1)), "requests", "requests: must be in"),
    ("zero SLO", dict(batch=sg(ttft_ms=0)), "ttft_ms", "ttft_ms: must be a positive number"),
    ("negative SLO", dict(batch=sg(e2e_ms=-1)), "e2e_ms", "e2e_ms: must be a positive number"),
    ("NaN SLO", dict(batch=sg(ttft_ms=math.nan)), "ttft_ms", "ttft_ms: must be a positive number"),
    ("unknown percentile", dict(batch=sg(percentile=97)), "percentile",
     "percentile: must be one of 50, 90, 95, 99, 99.9, got 97.0"),
    ("bad hour", dict(batch=sg(), hour=24), "hour", "hour: must be an integer hour 0..23"),
    ("missing batch", dict(), "batch", "batch: required"),
]


@pytest.mark.parametrize("request_kw, field, message", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_place_invalid_argument_names_the_field(plane, client, request_kw, field, message):
    e = rpc_error(client.placement.Place, placement_pb2.PlaceRequest(**request_kw), timeout=5)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details().startswith(message)
    assert error_field(e) == field and error_version(e) == plane.state.version


def test_place_batch_and_plan_invalid_argument(client):
    e = rpc_error(client.place_batch, [sg(), sg(region="mars")])
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "batches[1].region: unknown region 'mars'")
    e = rpc_error(client.place_batch, [sg()] * (MAX_BATCHES + 1), dry_run=True)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == f"batches: at most {MAX_BATCHES} batches per call, got {MAX_BATCHES + 1}"
    e = rpc_error(client.place_batch, [])
    assert (e.code(), error_field(e)) == (grpc.StatusCode.INVALID_ARGUMENT, "batches")
    bad_rate = types_pb2.DemandCell(region="manila", model="llm-70b", tokens_per_s=-1)
    e = rpc_error(client.get_plan, [bad_rate])
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details().startswith("demand[0].tokens_per_s: ")
    good = types_pb2.DemandCell(region="manila", model="llm-70b", tokens_per_s=1)
    e = rpc_error(client.get_plan, [good], policy="random")
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details().startswith("policy: unknown policy")
    e = rpc_error(client.get_plan, [])
    assert (e.code(), error_field(e)) == (grpc.StatusCode.INVALID_ARGUMENT, "demand")


@pytest.mark.parametrize("slo, field, reason", [(dict(ttft_ms=50), "ttft_ms", types_pb2.REASON_TTFT),
                                                (dict(e2e_ms=5000), "e2e_ms", types_pb2.REASON_E2E)])
def test_unmeetable_slo_is_failed_precondition_naming_the_closest_miss(client, slo, field, reason):
    e = rpc_error(client.place, sg(**slo))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.details().startswith(f"{field}: no site meets the SLO; closest miss: ")
    assert error_field(e) == field
    d = error_decision(e)
    assert d is not None and not d.placed and d.reason == reason
    assert {r.site: r.reason for r in d.rejections} == {"zhongwei": reason, "shaoguan": reason, "shantou": reason}
    closest = e.details().split("closest miss: ")[1].split()[0]
    assert closest in ("shaoguan", "shantou")  # the two nearest sites, not the far western one


def test_capacity_gone_is_resource_exhausted(plane, client):
    # A generous SLO, so only capacity can say no; ~1 accelerator per batch for 100 s fills the ~100 of the fleet.
    batch = sg(output_tokens=4000, requests=10, ttft_ms=60_000)
    e: grpc.RpcError | None = None
    for _ in range(400):
        try:
            client.place(batch)
        except grpc.RpcError as error:
            e = error
            break
    assert e is not None, "the fleet never filled up"
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.details()
    assert e.details().startswith("batch: ") and "full" in e.details() and error_field(e) == "batch"
    assert error_decision(e).reason == types_pb2.REASON_CAPACITY
    capacity = plane.engine.capacities(plane.engine.catalog)
    assert all(used <= capacity[k] + 1e-9 for k, used in plane.engine.ledger.snapshot().items())


def test_deadline_too_short_for_the_batch_is_deadline_exceeded_and_holds_nothing(plane, client):
    batches = [sg(input_tokens=100 + i % 900) for i in range(MAX_BATCHES)]
    e = rpc_error(client.place_batch, batches, timeout=0.15)
    assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert client.place(sg(), dry_run=True).decision.placed  # the server is still serving
    assert plane.engine.ledger.snapshot() == {}


class _Context:
    """A servicer context whose client deadline runs out after `calls` looks at the clock."""

    def __init__(self, calls: int):
        self.calls = calls
        self.code = self.details = None
        self.trailers = ()

    def time_remaining(self) -> float:
        self.calls -= 1
        return 5.0 if self.calls >= 0 else 0.0

    def is_active(self) -> bool:
        return True

    def set_trailing_metadata(self, md):
        self.trailers = md

    def abort(self, code, details):
        self.code, self.details = code, details
        raise grpc.RpcError(details)


def test_deadline_passing_during_a_call_releases_what_it_reserved(plane):
    servicer = PlacementServicer(plane.state)
    plane.engine.ledger.clear()
    ctx = _Context(calls=1)  # alive when the call starts, gone by the time the answer is ready
    with pytest.raises(grpc.RpcError):
        servicer.Place(placement_pb2.PlaceRequest(batch=sg()), ctx)
    assert ctx.code == grpc.StatusCode.DEADLINE_EXCEEDED and ctx.details.startswith("deadline: ")
    assert (errors.FIELD_KEY, "deadline") in ctx.trailers
    assert plane.engine.ledger.snapshot() == {}
    ctx = _Context(calls=1)
    with pytest.raises(grpc.RpcError):
        servicer.PlaceBatch(placement_pb2.PlaceBatchRequest(batches=[sg(), sg()]), ctx)
    assert ctx.code == grpc.StatusCode.DEADLINE_EXCEEDED and plane.engine.ledger.snapshot() == {}
    ctx = _Context(calls=0)  # already out of time: not even looked at
    with pytest.raises(grpc.RpcError):
        servicer.Place(placement_pb2.PlaceRequest(batch=sg()), ctx)
    assert ctx.code == grpc.StatusCode.DEADLINE_EXCEEDED


def test_an_unplaced_decision_always_fits_in_the_error_trailer():
    many = types_pb2.Decision(message="x", rejections=[
        types_pb2.Rejection(site=f"site-{i:04d}", reason=types_pb2.REASON_TTFT, detail="ttft 9999 ms > SLO 10 ms")
        for i in range(2000)])
    trimmed = types_pb2.Decision.FromString(trailer_decision(many))
    assert 0 < len(trimmed.rejections) < 2000 and trimmed.ByteSize() <= MAX_TRAILER_DECISION_BYTES
    assert trimmed.rejections[0].site == "site-0000"


# --- concurrency ---------------------------------------------------------------------------------------------
def test_concurrent_placements_never_overcommit(plane, client):
    # Each batch holds ~1 accelerator for 100 s; the three pools hold ~100 together, so the last of 160 calls lose.
    batch = sg(input_tokens=2000, output_tokens=4000, requests=10, ttft_ms=60_000)  # only capacity can say no
    codes: Counter[grpc.StatusCode] = Counter()
    placed: list[types_pb2.Decision] = []
    lock = threading.Lock()

    def worker() -> None:
        with Client(plane.target, timeout=20) as c:
            for _ in range(20):
                try:
                    d = c.place(batch).decision
                    with lock:
                        codes[grpc.StatusCode.OK] += 1
                        placed.append(d)
                except grpc.RpcError as e:
                    with lock:
                        codes[e.code()] += 1

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    assert codes[grpc.StatusCode.OK] >= 10 and codes[grpc.StatusCode.RESOURCE_EXHAUSTED] >= 1
    cat = plane.engine.catalog
    capacity = plane.engine.capacities(cat)
    snapshot = plane.engine.ledger.snapshot()
    for key, used in snapshot.items():
        assert used <= capacity[key] + 1e-9, key
    held: dict[str, float] = {}
    for d in placed:
        held[d.pool] = held.get(d.pool, 0.0) + d.accelerators
    assert {k: v for k, v in snapshot.items() if not k.startswith(CABLE_PREFIX)} == pytest.approx(held)
    # Full means full: what is left on every pool is less than one more batch would need.
    for p in cat.pools:
        assert capacity[p.key] - snapshot.get(p.key, 0.0) < max(d.accelerators for d in placed)


def test_cable_bandwidth_gone_is_resource_exhausted(tmp_path):
    thin = tmp_path / "thin.yaml"
    thin.write_text(TINY.read_text().replace("capacity_gbps: 100", "capacity_gbps: 0.000001"))
    with ControlPlane(thin, port=0, hour=lambda: HOUR) as plane, Client(plane.target, timeout=10) as client:
        e = rpc_error(client.place, sg())
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and error_field(e) == "batch"
        d = error_decision(e)
        assert d.reason == types_pb2.REASON_CABLE and {r.reason for r in d.rejections} == {types_pb2.REASON_CABLE}
        assert plane.engine.ledger.snapshot() == {}


def test_watches_are_capped_and_end_cleanly_when_the_server_stops():
    plane = ControlPlane(TINY, port=0, workers=4).start()  # 4 workers: at most one open watch
    with Client(plane.target, timeout=10) as client:
        first = client.watch_topology(timeout=30)
        assert next(first).kind == topology_pb2.TopologyEvent.KIND_CURRENT
        second = client.watch_topology(timeout=30)
        with pytest.raises(grpc.RpcError) as info:
            next(second)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert info.value.details() == "watch: at most 1 open watches"
        first.cancel()  # a client that leaves frees its slot

        def reopen() -> object:
            for _ in range(100):
                stream = client.watch_topology(timeout=30)
                try:
                    next(stream)
                    return stream
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    threading.Event().wait(0.1)
            raise AssertionError("the cancelled watch never gave its slot back")

        first = reopen()
        stopper = threading.Thread(target=plane.stop, kwargs={"grace": 20})
        stopper.start()
        assert list(first) == []  # the stream ends with OK, not cut off with an error
        stopper.join()
        assert first.code() == grpc.StatusCode.OK
