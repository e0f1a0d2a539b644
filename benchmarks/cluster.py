"""Cluster mode under faults: etcd + 3 `scheduler serve --cluster` replicas on loopback, 32 round_robin clients
placing and releasing for ~20 s; a replica kill -9'd at 5 s and restarted at 12 s, an operator's cable cut at 9 s,
the leader kill -9'd at 15 s. The same load against one embedded replica gives the placement ratio.

Prints one JSON line:
- overcommit_max: max over pools and samples of (sum of every replica's holds) / capacity - 1 (a dead replica's
  holds counted at their last sample until it restarts);
- slo_breaks: placements whose reported TTFT is over their SLO;
- wrong_releases: holds freed beyond the ids a client released (its own, each released once);
- stranded_capacity_pct: placements refused for capacity while the fleet sampled under 90 % full, in % of calls;
- failover_s: the longest time after a fault until every client was served again;
- cluster_vs_single_placements_ratio: placements served, cluster / one embedded replica.
`--quick` runs a shorter version (the CI test in tests/test_cluster_bench.py).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from etcd_server import EtcdServer, free_port  # noqa: E402

from scheduler.cluster.etcd_client import Etcd  # noqa: E402
from scheduler.paths import DEFAULT_TOPOLOGY  # noqa: E402
from scheduler.service.client import Client  # noqa: E402
from scheduler.v1 import types_pb2  # noqa: E402

REGIONS = ("singapore", "jakarta", "bangkok", "kuala-lumpur", "manila", "ho-chi-minh-city")


class Proc:
    def __init__(self, name: str, port: int, state: Path, cluster: str | None, max_hold: float):
        self.name, self.port, self.state, self.cluster, self.max_hold = name, port, state, cluster, max_hold
        self.p: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "scheduler", "serve", "--topology", str(DEFAULT_TOPOLOGY), "--port",
               str(self.port), "--state-dir", str(self.state), "--max-hold", str(self.max_hold), "--log-level",
               "error", "--drain-grace", "0"]
        if self.cluster:
            cmd += ["--cluster", self.cluster, "--replica", self.name, "--lease-ttl", "2", "--rebalance-period",
                    "0.5"]
        self.p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self) -> None:
        if self.p is not None and self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
            self.p.wait(10)

    def ready(self, timeout: float = 60) -> None:
        with Client(f"127.0.0.1:{self.port}", timeout=5) as c:
            c.wait_ready(timeout)
            c.get_topology()


class Load:
    """Clients placing (Place, sometimes PlaceBatch) and releasing their own holds."""

    def __init__(self, target: str, clients: int, regions: list[str], seed: int = 1):
        self.target, self.n, self.regions = target, clients, regions
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.calls = self.placed = self.refused = self.errors = self.slo_breaks = self.wrong = 0
        self.refusal_times: list[float] = []
        self.success: list[list[float]] = [[] for _ in range(clients)]
        self.seed = seed

    def run_client(self, i: int, t0: float) -> None:
        rng = random.Random(self.seed * 1000 + i)
        mine: list[list[int]] = []
        with Client(self.target, timeout=5, options=[("grpc.lb_policy_name", "round_robin")]) as c:
            while not self.stop.is_set():
                region = rng.choice(self.regions)
                b = types_pb2.Batch(region=region, model="llm-70b", input_tokens=500, output_tokens=rng.choice(
                    (100, 200, 400)), requests=rng.choice((200, 400, 800)))
                try:
                    if rng.random() < 0.2:
                        r = c.place_batch([b] * 5, time_limit_ms=300, compact=True)
                        ids, placed = list(r.columns.reservation_ids), r.placed
                        ok_slo = 0
                    else:
                        d = c.place(b).decision
                        ids, placed = list(d.reservation_ids), 1
                        ok_slo = int(d.ttft_ms > d.slo.ttft_ms + 1e-6)
                    with self.lock:
                        self.calls += 1
                        self.placed += placed
                        self.slo_breaks += ok_slo
                    self.success[i].append(time.monotonic() - t0)
                    if ids:
                        mine.append(ids)
                    if len(mine) > 3 or (mine and rng.random() < 0.3):
                        old = mine.pop(0)
                        released = c.release(old).released
                        if released > len(old):
                            with self.lock:
                                self.wrong += released - len(old)
                except grpc.RpcError as e:
                    with self.lock:
                        self.calls += 1
                        if e.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.FAILED_PRECONDITION):
                            self.refused += 1
                            self.refusal_times.append(time.monotonic() - t0)
                            self.success[i].append(time.monotonic() - t0)  # served: a clear answer
                        else:
                            self.errors += 1
                    time.sleep(0.02)

    def start(self, t0: float) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.run_client, args=(i, t0), daemon=True) for i in range(self.n)]
        for t in threads:
            t.start()
        return threads


def sample(procs: list[Proc], last: dict[str, dict[str, float]]) -> dict[str, float]:
    """Every replica's holds per pool (a dead one's: its last sample)."""
    for p in procs:
        try:
            with Client(f"127.0.0.1:{p.port}", timeout=0.5) as c:
                topo = c.get_topology().topology
            last[p.name] = {x.key: x.used_here for s in topo.sites for x in s.pools}
            last["_cap"] = {x.key: x.capacity for s in topo.sites for x in s.pools}
        except grpc.RpcError:
            pass
    total: dict[str, float] = {}
    for name, used in last.items():
        if name != "_cap":
            for k, v in used.items():
                total[k] = total.get(k, 0.0) + v
    return total


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
    last: dict[str, dict[str, float]] = {}
    over, fills, fault_times = 0.0, [], []
    t0 = time.monotonic()
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
            total = sample([p for p in procs if p.p and p.p.poll() is None], last)
            caps = last.get("_cap", {})
            for k, v in total.items():
                if caps.get(k):
                    over = max(over, v / caps[k] - 1)
            if caps:
                fills.append((time.monotonic() - t0, sum(total.values()) / sum(caps.values())))
            time.sleep(0.2)
    finally:
        load.stop.set()
        for t in threads:
            t.join(10)
        for p in procs:
            p.kill()
        if etcd:
            etcd.stop()
    failover = 0.0
    for tf in fault_times:
        for times in load.success:
            after = [t for t in times if t > tf + 0.05]
            failover = max(failover, (after[0] - tf) if after else duration - tf)
    stranded = 0
    for t in load.refusal_times:
        near = [f for (ts, f) in fills if abs(ts - t) < 0.5]
        if near and max(near) < 0.9:
            stranded += 1
    return {"calls": load.calls, "placed": load.placed, "refused": load.refused, "errors": load.errors,
            "slo_breaks": load.slo_breaks, "wrong": load.wrong, "over": over,
            "stranded_pct": 100.0 * stranded / max(1, load.calls), "failover": failover}


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
    print(f"cluster: {c}", file=sys.stderr)
    print(f"single:  {s}", file=sys.stderr)
    print(json.dumps({
        "overcommit_max": round(max(0.0, c["over"]), 6), "slo_breaks": c["slo_breaks"],
        "wrong_releases": c["wrong"], "stranded_capacity_pct": round(c["stranded_pct"], 3),
        "failover_s": round(c["failover"], 3),
        "cluster_vs_single_placements_ratio": round(c["placed"] / max(1, s["placed"]), 3),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
