"""Load and faults: 64 concurrent router clients (threads, one channel and stub each, loopback, real tokens) for a
bounded time against a real control plane on the default topology, while an operator cuts the busiest cable,
takes the busiest site down through a topology edit, and pushes a bad and then a good topology reload.

Must hold throughout: no unexpected status (RESOURCE_EXHAUSTED for capacity and FAILED_PRECONDITION for SLOs are
answers, not errors), no pool or cable held past its capacity (the ledger is checked every few milliseconds), no
placement whose estimate breaks its SLO or lands on a site that is down in the version it reports, and no
placement asked for after the cut that crosses the cut cable. SLO breaks are counted as the engine promises them:
at its percentile under the pool's M/M/c wait, both when placed (the decision's TTFT at the percentile) and all
along (no pool ever past the lowest ceiling of its live placements, the load up to which the percentile holds). The figures (calls, codes, p50/p99) are printed, and
repeated in pytest's terminal summary so that they appear in every CI log.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import grpc

from scheduler.paths import DEFAULT_TOPOLOGY
from scheduler.service.client import Client, error_field
from scheduler.service.server import ControlPlane
from scheduler.v1 import types_pb2
from conftest import token_store

CLIENTS = 64
SECONDS = 9.0
ROUTER, OPERATOR = "load-router-token", "load-operator-token"
CUT_AT, SITE_DOWN_AT, BAD_RELOAD_AT, GOOD_RELOAD_AT = 1.5, 3.5, 5.5, 7.0
EXPECTED = {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.FAILED_PRECONDITION}
CAPACITY_FIELDS = {"batch", "batches"}  # RESOURCE_EXHAUSTED for capacity or cable bandwidth, not "server: busy"
EPS = 1e-6


@dataclass
class Call:
    op: str
    started: float
    ended: float
    code: grpc.StatusCode
    fault: str = ""
    version: str = ""
    decisions: list = field(default_factory=list)


@dataclass
class Timeline:
    cut_cable: str = ""
    cut_done: float = float("inf")
    down_site: str = ""
    site_down_done: float = float("inf")
    down_version: str = ""
    bad_refused: bool = False
    served_after_bad: str = ""
    final_version: str = ""
    versions: dict = field(default_factory=dict)  # version -> sites down in it


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))] if s else float("nan")


class Summary:
    """A pytest plugin registered by the test: repeats the figures at the end of the run, -q or not."""

    def __init__(self, lines: list[str]):
        self.lines = lines

    def pytest_terminal_summary(self, terminalreporter):
        terminalreporter.section("load test figures")
        for line in self.lines:
            terminalreporter.write_line(line)


def router(target: str, k: int, stop: threading.Event, start: threading.Barrier, regions: list[str],
           models: list[str], out: list[Call]) -> None:
    rng = random.Random(k)
    held: list[int] = []
    with Client(target, timeout=15, token=ROUTER) as c:
        c.wait_ready(10)
        start.wait()
        while not stop.is_set():
            r = rng.random()

            def batch() -> types_pb2.Batch:
                return types_pb2.Batch(
                    id=f"{k}-{len(out)}", region=rng.choice(regions), model=rng.choice(models),
                    input_tokens=rng.randint(200, 6000), output_tokens=rng.randint(50, 1500),
                    requests=rng.choice([1, 1, 2, 5, 20, 60, 150]),
                    ttft_ms=rng.choice([None, None, 300.0, 700.0, 2000.0]))
            if r < 0.80:
                op, fn = "Place", lambda: c.place(batch(), hour=14)
            elif r < 0.88:
                op, fn = "PlaceBatch", lambda: c.place_batch([batch() for _ in range(4)], hour=14, time_limit_ms=300)
            elif r < 0.92:
                op, fn = "GetTopology", c.get_topology
            else:
                op = "Release"
                ids, held[:] = held[: len(held) // 2 + 1], held[len(held) // 2 + 1:]
                fn = lambda ids=ids: c.release(ids)  # noqa: E731
            t0 = time.monotonic()
            try:
                resp = fn()
                decisions = ([resp.decision] if op == "Place" else list(resp.decisions) if op == "PlaceBatch"
                             else [])
                call = Call(op, t0, time.monotonic(), grpc.StatusCode.OK, version=resp.topology_version,
                            decisions=decisions)
                for d in decisions:
                    held.extend(d.reservation_ids)
            except grpc.RpcError as e:
                call = Call(op, t0, time.monotonic(), e.code(), error_field(e) or "", details_version(e))
            out.append(call)


def details_version(e: grpc.RpcError) -> str:
    for k, v in e.trailing_metadata() or ():
        if k == "scheduler-topology-version":
            return v
    return ""


def with_site_down(text: str, site: str) -> str:
    """The topology text with `status: down` added to one site (after its `- id:` line, at its keys' indent)."""
    lines = text.splitlines()
    sites = lines.index("sites:")  # tariffs come first and share some ids (chongqing)
    i = next(n for n, line in enumerate(lines) if n > sites
             and re.fullmatch(rf"\s*- id: {re.escape(site)}\s*(#.*)?", line))
    indent = " " * (len(lines[i]) - len(lines[i].lstrip()) + 2)
    lines.insert(i + 1, f"{indent}status: down")
    return "\n".join(lines) + "\n"


def operator(plane: ControlPlane, path, began: float, stop: threading.Event, t: Timeline,
             failures: list[str]) -> None:
    def at(s: float) -> None:
        stop.wait(max(0.0, began + s - time.monotonic()))

    with Client(plane.target, timeout=30, token=OPERATOR) as c:
        t.versions[c.get_topology().topology_version] = set()
        at(CUT_AT)
        topo = c.get_topology().topology
        busiest = max(topo.cables, key=lambda x: (x.used_gbps, x.capacity_gbps))
        t.cut_cable = busiest.id
        resp = c.set_link_status([busiest.id], up=False)
        t.cut_done = time.monotonic()
        if busiest.id not in resp.down_cables:
            failures.append(f"cut {busiest.id} not reported down: {resp}")

        at(SITE_DOWN_AT)
        topo = c.get_topology().topology
        site = max(topo.sites, key=lambda s: sum(p.used for p in s.pools))
        t.down_site = site.id
        good = with_site_down(path.read_text(), site.id)
        path.write_text(good)
        result = c.reload_topology().result
        t.site_down_done = time.monotonic()
        if not result.ok:
            failures.append(f"site-down edit refused: {[e.text for e in result.errors]}")
        t.down_version = result.version
        t.versions[result.version] = {site.id}

        at(BAD_RELOAD_AT)
        path.write_text(good.replace("pue: 1.45", "pue: -1.45", 1))
        bad = c.reload_topology()
        t.bad_refused = not bad.result.ok and bool(bad.result.errors)
        t.served_after_bad = bad.topology_version

        at(GOOD_RELOAD_AT)
        path.write_text(good + "# reviewed by the on-call operator\n")
        fixed = c.reload_topology()
        if not fixed.result.ok:
            failures.append(f"good reload refused: {[e.text for e in fixed.result.errors]}")
        t.final_version = fixed.topology_version
        t.versions[fixed.topology_version] = {site.id}
        after = c.get_topology().topology
        if [x.up for x in after.cables if x.id == t.cut_cable] != [False]:
            failures.append("the operator's cut did not survive the reloads")


def test_64_clients_through_a_cable_cut_a_site_outage_and_bad_and_good_reloads(tmp_path, request):
    path = tmp_path / "china-sea.yaml"
    path.write_text(DEFAULT_TOPOLOGY.read_text())
    tokens = token_store(tmp_path / "tokens.yaml", routers=("router", ROUTER), ops=("operator", OPERATOR))
    plane = ControlPlane(path, port=0, hour=lambda: 14, workers=CLIENTS, max_concurrent=CLIENTS + 16,
                         poll_interval_s=3600, tokens=tokens).start()
    topo = plane.engine.catalog.topology
    regions, models = [r.id for r in topo.regions], [m.id for m in topo.models]
    calls: list[list[Call]] = [[] for _ in range(CLIENTS)]
    stop, start = threading.Event(), threading.Barrier(CLIENTS + 1)
    t, failures = Timeline(), []
    overcommits: list[str] = []
    past_ceiling: list[str] = []  # a pool loaded past the load at which a live placement's percentile holds
    checks = [0]

    def monitor() -> None:
        while not stop.is_set():
            engine = plane.engine
            caps = engine.capacities(engine.catalog)
            for key, used in engine.ledger.snapshot().items():
                if used > caps.get(key, float("inf")) + EPS:
                    overcommits.append(f"{key}: {used} > {caps[key]}")
            keys = engine.catalog.ledger_keys
            used, ceiling = engine.ledger.state(keys)
            past_ceiling.extend(f"{k}: {u} > {c}" for k, u, c in zip(keys, used, ceiling) if u > c + EPS)
            checks[0] += 1
            stop.wait(0.005)

    routers = [threading.Thread(target=router, args=(plane.target, k, stop, start, regions, models, calls[k]))
               for k in range(CLIENTS)]
    try:
        for th in routers:
            th.start()
        start.wait(60)
        began = time.monotonic()
        side = [threading.Thread(target=monitor),
                threading.Thread(target=operator, args=(plane, path, began, stop, t, failures))]
        for th in side:
            th.start()
        stop.wait(SECONDS)
        stop.set()
        for th in routers + side:
            th.join(60)
        elapsed = time.monotonic() - began
    finally:
        stop.set()
        plane.stop(5)

    every = [x for per in calls for x in per]
    codes = Counter(x.code.name for x in every)
    unexpected = [x for x in every if x.code not in EXPECTED
                  or (x.code is grpc.StatusCode.RESOURCE_EXHAUSTED and x.fault not in CAPACITY_FIELDS)]
    placed = [(x, d) for x in every for d in x.decisions if d.placed]
    by_op: dict[str, list[float]] = defaultdict(list)
    for x in every:
        by_op[x.op].append((x.ended - x.started) * 1000)
    latencies = [ms for v in by_op.values() for ms in v]

    slo_breaks, down_sites, over_cut = [], [], []
    for x, d in placed:
        if d.slo.HasField("ttft_ms") and d.ttft_ms > d.slo.ttft_ms + EPS:
            slo_breaks.append((d.batch_id, d.ttft_ms, d.slo.ttft_ms))
        if d.slo.HasField("e2e_ms") and d.e2e_ms > d.slo.e2e_ms + EPS:
            slo_breaks.append((d.batch_id, d.e2e_ms, d.slo.e2e_ms))
    for x, d in placed:
        if x.started > t.cut_done and t.cut_cable in d.route.cables:
            over_cut.append((d.batch_id, list(d.route.cables)))
        if x.started > t.site_down_done and d.site == t.down_site:
            down_sites.append((d.batch_id, d.site))
    after_cut = [d for x, d in placed if x.started > t.cut_done]
    after_down = [d for x, d in placed if x.started > t.site_down_done]

    lines = [
        f"{CLIENTS} clients, {elapsed:.1f} s, {len(every)} calls ({len(every) / elapsed:.0f}/s), "
        f"{len(placed)} placements ({len(after_cut)} after the cut of {t.cut_cable!r}, {len(after_down)} after "
        f"{t.down_site!r} went down); ledger checked {checks[0]} times",
        "codes: " + ", ".join(f"{k} {v}" for k, v in codes.most_common()),
        f"latency all calls: p50 {pct(latencies, 0.5):.1f} ms, p99 {pct(latencies, 0.99):.1f} ms",
        *(f"  {op:<11} {len(v):>6} calls  p50 {pct(v, 0.5):7.1f} ms  p99 {pct(v, 0.99):7.1f} ms"
          for op, v in sorted(by_op.items())),
        f"unexpected errors {len(unexpected)}, overcommits {len(overcommits)}, SLO breaks {len(slo_breaks)} "
        f"when placed and {len(past_ceiling)} since (pools past a placement's ceiling), "
        f"placements on the down site after the edit {len(down_sites)}, over the cut cable after the cut "
        f"{len(over_cut)}",
    ]
    print("\n".join(["", "load test figures:", *lines]))
    request.config.pluginmanager.register(Summary(lines), "scheduler-load-figures")

    assert not failures, failures
    assert not unexpected, Counter((x.op, x.code.name, x.fault) for x in unexpected)
    assert not overcommits, overcommits[:5]
    assert not slo_breaks, slo_breaks[:5]
    assert not past_ceiling, past_ceiling[:5]
    assert not over_cut, over_cut[:5]
    assert not down_sites, down_sites[:5]
    assert t.bad_refused and t.served_after_bad == t.down_version  # the bad edit changed nothing
    assert t.final_version not in ("", t.down_version) and plane.state.version == t.final_version
    # Every placement names a version that was served, and its site is up in that version.
    for x, d in placed:
        assert x.version in t.versions and d.site not in t.versions[x.version], (x.version, d.site)
    assert checks[0] > 20 and len(after_cut) > 20 and len(after_down) > 20  # the checks above had work
