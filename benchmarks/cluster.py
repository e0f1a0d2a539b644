"""Cluster mode under faults: etcd + 3 `scheduler serve --cluster` replicas on loopback, 32 round_robin clients
placing and releasing for ~20 s; a replica kill -9'd at 5 s and restarted at 12 s, an operator's cable cut at 9 s,
the leader kill -9'd at 15 s. The same load against one embedded replica gives the placement ratio.

Prints one JSON line. Holds are replayed exactly from every replica's state-directory log (History: each record
carries its wall-clock time; a run's log is kept before it is killed), not sampled over gRPC, since several
replicas cannot be read at one instant under load:
- overcommit_max: max over keys (pools and cables) and time of (every replica's holds) / capacity - 1;
- slo_breaks: placements whose reported TTFT is over their SLO, plus holds that started with their pool's
  fleet-wide load over the lowest ceiling of the holds live on it (the load at which that placement's SLO breaks);
- wrong_releases: holds freed beyond the ids a client released (its own, each released once);
- stranded_capacity_pct: batches refused (the engine's answer; calls turned away because a server was at its
  maximum of concurrent calls are counted apart) while the fleet had room for them, in % of the batches asked for: one
  engine holding every replica's holds at the moment of the refusal (halfway through the call) would have placed
  the batch. The replicas' own estimate (scheduler_cluster_stranded_placements, at the others' holds as last
  published) goes to stderr beside it, and the same check of the single replica's refusals shows the measure's
  noise (a single replica strands nothing);
- failover_s: the longest time after a fault until every client was served again;
- cluster_vs_single_placements_ratio: placements served, cluster / one embedded replica.
`--quick` runs a shorter version (the CI test in tests/test_cluster_bench.py).
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from etcd_server import EtcdServer, free_port  # noqa: E402

from scheduler.cluster.etcd_client import Etcd  # noqa: E402
from scheduler.engine.core import Engine  # noqa: E402
from scheduler.model.loader import load_topology  # noqa: E402
from scheduler.paths import DEFAULT_TOPOLOGY  # noqa: E402
from scheduler.service.client import Client  # noqa: E402
from scheduler.service.convert import batch_from_pb  # noqa: E402
from scheduler.service.errors import DECISION_KEY  # noqa: E402
from scheduler.v1 import types_pb2  # noqa: E402

HOUR = 20  # China time: the evening peak's prices, for every call and for the outside check
REGIONS = ("singapore", "jakarta", "bangkok", "kuala-lumpur", "manila", "ho-chi-minh-city")


class Proc:
    def __init__(self, name: str, port: int, state: Path, cluster: str | None, max_hold: float):
        self.name, self.port, self.state, self.cluster, self.max_hold = name, port, state, cluster, max_hold
        self.metrics_port = free_port()
        self.p: subprocess.Popen | None = None
        self.logs: list[Path] = []  # the hold logs of every run of it, kept as each run ended

    def start(self) -> None:
        cmd = [sys.executable, "-m", "scheduler", "serve", "--topology", str(DEFAULT_TOPOLOGY), "--port",
               str(self.port), "--state-dir", str(self.state), "--max-hold", str(self.max_hold), "--log-level",
               "error", "--drain-grace", "0", "--metrics-port", str(self.metrics_port)]
        if self.cluster:
            cmd += ["--cluster", self.cluster, "--replica", self.name, "--lease-ttl", "2", "--rebalance-period",
                    "0.5"]
        self.p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self) -> None:
        if self.p is not None and self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
            self.p.wait(10)
            self._keep_logs()

    def _keep_logs(self) -> None:
        """Copy this run's hold logs aside: the next run starts new ones and drops these."""
        for log in sorted(self.state.glob("holds.*.log")):
            kept = self.state.parent / f"kept-{self.name}-{self.p.pid}-{log.name}"
            shutil.copyfile(log, kept)
            self.logs.append(kept)

    def ready(self, timeout: float = 60) -> None:
        with Client(f"127.0.0.1:{self.port}", timeout=5) as c:
            c.wait_ready(timeout)
            c.get_topology()


@dataclass(frozen=True)
class Refusal:
    """A call that had `count` copies of `batch` refused, between `sent` and `answered` (wall clock)."""

    sent: float
    answered: float
    batch: types_pb2.Batch
    count: int
    many: bool  # PlaceBatch (else Place)


class Load:
    """Clients placing (Place, sometimes PlaceBatch) and releasing their own holds. Every call that had batches
    refused is recorded with when it was sent and answered (wall clock), for the outside check of stranded
    refusals."""

    def __init__(self, target: str, clients: int, regions: list[str], seed: int = 1):
        self.target, self.n, self.regions = target, clients, regions
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.calls = self.asked = self.placed = self.refused = self.errors = self.slo_breaks = self.wrong = 0
        self.turned_away = 0
        self.unplaced: Counter[str] = Counter()  # PlaceBatch's unplaced batches by reason
        self.success: list[list[float]] = [[] for _ in range(clients)]
        self.seed = seed
        self.refusals: list[Refusal] = []

    def run_client(self, i: int, t0: float) -> None:
        rng = random.Random(self.seed * 1000 + i)
        mine: list[list[int]] = []
        with Client(self.target, timeout=5, options=[("grpc.lb_policy_name", "round_robin")]) as c:
            while not self.stop.is_set():
                region = rng.choice(self.regions)
                many = rng.random() < 0.2
                b = types_pb2.Batch(region=region, model="llm-70b", input_tokens=500, output_tokens=rng.choice(
                    (100, 200, 400)), requests=rng.choice((200, 400, 800)))
                sent = time.time()
                try:
                    if many:
                        r = c.place_batch([b] * 5, hour=HOUR, time_limit_ms=300, compact=True)
                        ids, placed = list(r.columns.reservation_ids), r.placed
                        refused = [Refusal(sent, time.time(), b, 5 - placed, True)] if placed < 5 else []
                        with self.lock:
                            for j, ok in enumerate(r.columns.placed):
                                if not ok:
                                    self.unplaced[types_pb2.Reason.Name(r.columns.reason[j])] += 1
                        ok_slo = 0
                    else:
                        d = c.place(b, hour=HOUR).decision
                        ids, placed = list(d.reservation_ids), 1
                        refused = []
                        ok_slo = int(d.ttft_ms > d.slo.ttft_ms + 1e-6)
                    with self.lock:
                        self.calls += 1
                        self.asked += 5 if many else 1
                        self.placed += placed
                        self.slo_breaks += ok_slo
                        self.refusals += refused
                    self.success[i].append(time.monotonic() - t0)
                    if ids:
                        mine.append(ids)
                    if len(mine) > 3 or (mine and rng.random() < 0.3):
                        old = mine.pop(0)
                        try:
                            released = c.release(old).released
                        except grpc.RpcError:  # the holder is down: its holds end by themselves
                            continue
                        if released > len(old):
                            with self.lock:
                                self.wrong += released - len(old)
                except grpc.RpcError as e:
                    now = time.monotonic() - t0
                    answered = time.time()
                    with self.lock:
                        self.calls += 1
                        self.asked += 5 if many else 1
                        if any(k == DECISION_KEY for k, _ in e.trailing_metadata() or ()):
                            self.refused += 1  # the engine's answer: no site for it (capacity, or its SLO)
                            self.refusals.append(Refusal(sent, answered, b, 5 if many else 1, many))
                            self.success[i].append(now)  # served: a clear answer
                        elif e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                            self.turned_away += 1  # the server was at its maximum of concurrent calls
                            self.success[i].append(now)
                        else:
                            self.errors += 1
                    time.sleep(0.02)

    def start(self, t0: float) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.run_client, args=(i, t0), daemon=True) for i in range(self.n)]
        for t in threads:
            t.start()
        return threads


CLUSTER_COUNTERS = ("scheduler_cluster_stranded_placements_total", "scheduler_cluster_passed_on_placements_total",
                    "scheduler_cluster_budget_short_placements_total", "scheduler_cluster_claims_total",
                    "scheduler_cluster_dead_peers_total")


def scrape(p: Proc) -> dict[str, float] | None:
    """The replica's cluster counters by series (`name{labels}`), None if it did not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{p.metrics_port}/metrics", timeout=0.5) as r:
            text = r.read().decode()
    except OSError:
        return None
    return {series: float(value) for series, value in (line.rsplit(" ", 1) for line in text.splitlines()
                                                       if line.startswith(CLUSTER_COUNTERS))}


class History:
    """What every replica held, and when, replayed from the logs of their state directories (each record carries
    its wall-clock time; the logs of a run are kept before it is killed, as its restart starts a new log). Exact
    where sampling over gRPC is not: several replicas cannot be read at one instant under load."""

    def __init__(self, logs: list[Path], cut_at: float | None):
        items: dict[int, list] = {}  # id -> [key, amount, ceiling, start, end]
        releases: list[tuple[float, list[int]]] = []
        for path in logs:
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    break  # a torn tail (kill -9): never acknowledged
                if "r" in rec:
                    keys = rec["keys"]
                    for i, (k, a, c, e) in enumerate(zip(rec["k"], rec["a"], rec["c"], rec["e"])):
                        items[rec["r"] + i] = [keys[k], a, math.inf if c is None else c, rec["t"], e]
                elif "x" in rec:
                    releases.append((rec["t"], rec["x"]))
        for t, ids in releases:
            for i in ids:
                if i in items:
                    items[i][4] = min(items[i][4], t)
        self.items = items
        topology = load_topology(DEFAULT_TOPOLOGY).value
        self.engine = Engine.from_topology(topology)
        self.cut = Engine.from_topology(topology)
        self.cut.set_links(["apcn-2"], up=False)
        self.cut_at = math.inf if cut_at is None else cut_at
        self.caps = self.engine.capacities(self.engine.catalog)

    def replay(self, refusals: list[Refusal]) -> dict:
        """Walk every hold's start and end in time order, with the refused calls in between: the most any key
        carried over its capacity, how many holds started with their pool over the lowest ceiling of the holds live
        on it (a promise broken), and how many refused batches were stranded: an engine holding all of it, at the
        SLO ceilings, would have placed them (one after the other) both when the call was sent and when it was
        answered. The server decided somewhere in between; room that came and went within the call is not
        counted, room that stayed is."""
        events = []
        for rid, (key, amount, ceiling, start, end) in self.items.items():
            if end > start:
                events.append((start, 1, rid))
                events.append((end, 0, rid))  # at one instant, ends before starts
        for j, r in enumerate(refusals):
            events += [(r.sent, 2, j), (r.answered, 2, j)]
        events.sort(key=lambda e: (e[0], e[1]))
        load: dict[str, float] = {}
        live: set[int] = set()
        heaps: dict[str, list] = {}
        over, broken = 0.0, 0
        room: dict[int, int] = {}  # per refused call: how many of its batches fitted when it was sent
        stranded = {"Place": 0, "PlaceBatch": 0}
        when: list[tuple[float, int, str]] = []  # (sent, batches, where the first would go) of every stranded call
        for t, kind, x in events:
            if kind == 0:
                key, amount = self.items[x][0], self.items[x][1]
                load[key] -= amount
                live.discard(x)
            elif kind == 1:
                key, amount, ceiling = self.items[x][0], self.items[x][1], self.items[x][2]
                load[key] = load.get(key, 0.0) + amount
                live.add(x)
                if ceiling < math.inf:
                    heapq.heappush(heaps.setdefault(key, []), (ceiling, x))
                cap = self.caps.get(key, math.inf)
                if 0 < cap < math.inf:
                    over = max(over, load[key] / cap - 1)
                if load[key] > self._lowest(heaps, key, live) + 1e-6:
                    broken += 1
            else:
                fits = self._fits(refusals[x], t, load, heaps, live)
                if x in room:
                    n = min(room.pop(x), fits)
                    stranded["PlaceBatch" if refusals[x].many else "Place"] += n
                    if n:
                        when.append((refusals[x].sent, n, self.first_pool))
                else:
                    room[x] = fits
        return {"over": over, "broken": broken, "stranded": sum(stranded.values()), "stranded_by_rpc": stranded,
                "when": when}

    def _fits(self, r: Refusal, t: float, load: dict[str, float], heaps: dict[str, list], live: set[int]) -> int:
        """How many of the call's refused batches one engine holding `load` would place, one after the other
        (each on the pool load the previous ones left; cables left out)."""
        engine = self.cut if t >= self.cut_at else self.engine
        engine.ledger.set_shares(None, None, {k: self._lowest(heaps, k, live) for k in heaps})
        batch, load = batch_from_pb(r.batch), dict(load)
        for n in range(r.count):
            d = engine.decide_at(batch, load, HOUR)
            if not d.placed:
                return n
            if n == 0:
                self.first_pool = d.pool
            load[d.pool] = load.get(d.pool, 0.0) + d.load
        return r.count

    @staticmethod
    def _lowest(heaps: dict[str, list], key: str, live: set[int]) -> float:
        heap = heaps.get(key)
        while heap and heap[0][1] not in live:
            heapq.heappop(heap)
        return heap[0][0] if heap else math.inf


class Counters:
    """Every replica run's cluster counters, at its last scrape (a killed run keeps what it had counted)."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, int], dict[str, float]] = {}

    def scrape(self, procs: list[Proc]) -> None:
        for p in procs:
            if (counters := scrape(p)) is not None:
                self.last[(p.name, p.p.pid)] = counters

    def total(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for counters in self.last.values():
            for series, n in counters.items():
                out[series] = out.get(series, 0.0) + n
        return out


def run(cluster: bool, duration: float, clients: int, faults: dict[str, float], work: Path) -> dict:
    etcd = EtcdServer().start() if cluster else None
    names = ["r0", "r1", "r2"] if cluster else ["single"]
    procs = [Proc(n, free_port(), work / f"{n}-{int(cluster)}", etcd.url if etcd else None, max_hold=30)
             for n in names]
    for p in procs:
        p.start()
    for p in procs:
        p.ready()
    time.sleep(2.0 if cluster else 0.2)  # first grants
    target = "ipv4:" + ",".join(f"127.0.0.1:{p.port}" for p in procs)
    load = Load(target, clients, list(REGIONS))
    counters = Counters()
    fault_times, cut_at = [], None
    t0, t0_wall = time.monotonic(), time.time()
    threads = load.start(t0)
    done = set()
    try:
        while (now := time.monotonic() - t0) < duration:
            if cluster:
                if "kill" not in done and now >= faults["kill"]:
                    procs[1].kill()
                    done.add("kill")
                    fault_times.append(now)
                if "cut" not in done and now >= faults["cut"]:
                    with Client(target, timeout=5, options=[("grpc.lb_policy_name", "round_robin")]) as c:
                        c.set_link_status(["apcn-2"], up=False)
                    cut_at = time.time()
                    done.add("cut")
                if "restart" not in done and now >= faults["restart"]:
                    procs[1].start()
                    done.add("restart")
                if "leader" not in done and now >= faults["leader"]:
                    e = Etcd([etcd.endpoint])
                    who = e.leader("/scheduler/leader")
                    e.close()
                    victim = next((p for p in procs if who and p.name == who.value.decode()), procs[0])
                    victim.kill()
                    done.add("leader")
                    fault_times.append(now)
            counters.scrape([p for p in procs if p.p and p.p.poll() is None])
            time.sleep(0.2)
    finally:
        load.stop.set()
        for t in threads:
            t.join(10)
        counters.scrape([p for p in procs if p.p and p.p.poll() is None])  # the last counts
        for p in procs:
            p.kill()
        if etcd:
            etcd.stop()
    failover = 0.0
    for tf in fault_times:
        for times in load.success:
            after = [t for t in times if t > tf + 0.05]
            failover = max(failover, (after[0] - tf) if after else duration - tf)
    replayed = History([log for p in procs for log in p.logs], cut_at).replay(load.refusals)
    return {"calls": load.calls, "asked": load.asked, "placed": load.placed, "refused": load.refused,
            "turned_away": load.turned_away, "batch_unplaced": dict(load.unplaced),
            "errors": load.errors, "slo_breaks": load.slo_breaks, "broken_promises": replayed["broken"],
            "wrong": load.wrong, "over": replayed["over"], "stranded": replayed["stranded"],
            "stranded_by_rpc": replayed["stranded_by_rpc"],
            "stranded_pct": 100.0 * replayed["stranded"] / max(1, load.asked), "failover": failover,
            "stranded_by_second": per_second(replayed["when"], t0_wall, duration),
            "stranded_by_pool": dict(Counter(p for _, n, p in replayed["when"] for _ in range(n)).most_common(6)),
            "stranded_when": replayed["when"],
            "replicas_counted": counters.total()}


def per_second(when: list[tuple[float, int, str]], t0: float, duration: float) -> list[int]:
    """Stranded batches by the second of the run their call was sent in (where the faults' effects show)."""
    out = [0] * (int(math.ceil(duration)) + 1)
    for sent, n, _ in when:
        out[min(len(out) - 1, max(0, int(sent - t0)))] += n
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (CI)")
    args = parser.parse_args()
    if args.quick:
        duration, clients = 9.0, 8
        faults = {"kill": 2.0, "cut": 3.0, "restart": 4.5, "leader": 6.0}
    else:
        duration, clients = 20.0, 32
        faults = {"kill": 5.0, "cut": 9.0, "restart": 12.0, "leader": 15.0}
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
        work = Path(tmp)
        c = run(True, duration, clients, faults, work)
        s = run(False, duration, clients, faults, work)
    for r in (c, s):
        del r["stranded_when"]
    print(f"cluster: {c}", file=sys.stderr)
    print(f"single:  {s}", file=sys.stderr)
    print(json.dumps({
        "overcommit_max": round(max(0.0, c["over"]), 6), "slo_breaks": c["slo_breaks"] + c["broken_promises"],
        "wrong_releases": c["wrong"], "stranded_capacity_pct": round(c["stranded_pct"], 3),
        "failover_s": round(c["failover"], 3),
        "cluster_vs_single_placements_ratio": round(c["placed"] / max(1, s["placed"]), 3),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
