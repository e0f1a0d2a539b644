"""gRPC load: `Place` latency and throughput against an echo server on the same framework, and `PlaceBatch`
placements per second.

Run: `make bench` or `.venv/bin/python benchmarks/grpc_load.py [--topology FILE] [--seconds S] [--clients N]`.

Both servers run in their own process, built the same way (grpc.server on a thread pool of the same size, loopback
only): the control plane is `scheduler serve`; the echo server answers the same method path with the request it
got (deserialized and re-serialized as a PlaceRequest: the framework's floor, no engine). The same client threads
drive both, closed loop, so the ratio isolates what the engine and the message translation add. Every loop is
bounded in count and in time. The last line is one JSON object.

PlaceBatch calls alternate between the full answer (one Decision message per batch) and the compact one
(`PlaceBatchRequest.compact`: the decisions column by column, routes listed once); the target counts the faster.

Targets: `Place` p99 <= 2x echo p99; >= 50,000 placements/s through PlaceBatch.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scheduler.paths import DEFAULT_TOPOLOGY, TOPOLOGY_DIR  # noqa: E402
from scheduler.service import convert  # noqa: E402
from scheduler.service.client import Client  # noqa: E402
from scheduler.service.server import DEFAULT_WORKERS  # noqa: E402
from scheduler.v1 import placement_pb2, types_pb2  # noqa: E402

ECHO_METHOD = "/scheduler.v1.PlacementService/Place"
P99_TARGET = 2.0
BATCHED_TARGET = 50_000.0
MAX_CALLS_PER_CLIENT = 50_000


# --- the echo server (child process) -----------------------------------------------------------------------------
def serve_echo(workers: int) -> None:
    """Answer Place with the request itself: same framework, same thread pool, same messages, no engine."""
    handler = grpc.method_handlers_generic_handler("scheduler.v1.PlacementService", {
        "Place": grpc.unary_unary_rpc_method_handler(
            lambda request, context: request,
            request_deserializer=placement_pb2.PlaceRequest.FromString,
            response_serializer=placement_pb2.PlaceRequest.SerializeToString),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"serving echo on 127.0.0.1:{port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    server.stop(1).wait()


def start(cmd: list[str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    m = re.search(r" on (\S+:\d+)$", line.strip())
    if not m:
        proc.kill()
        raise SystemExit(f"server did not start: {' '.join(cmd)}: {line!r}")
    return proc, m.group(1)


def server_cpu_s(pid: int | None) -> float | None:
    """CPU seconds (user + system) a server process has used so far; None where /proc cannot tell (not Linux).

    On a shared, busy machine wall-clock latencies swing with whatever else runs; the CPU a server spends per call
    moves much less, so the benchmark reports it next to the latencies."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


# --- load --------------------------------------------------------------------------------------------------------
def requests_for(regions: list[str], model: str, n: int, seed: int) -> list[placement_pb2.PlaceRequest]:
    rng = random.Random(seed)
    return [placement_pb2.PlaceRequest(batch=types_pb2.Batch(
        region=rng.choice(regions), model=model, input_tokens=rng.randint(200, 4000),
        output_tokens=rng.randint(50, 800)), hour=14) for _ in range(n)]


def closed_loop(target: str, method: str, reqs: list[placement_pb2.PlaceRequest], response_type, clients: int,
                seconds: float, warmup: int = 200, pid: int | None = None, release: bool = False) -> dict:
    """`clients` threads, one channel each, calling back to back for `seconds` (and at most a bounded count).
    `release`: the answers are PlaceResponses whose holds are released afterwards (untimed), so the next phase
    starts on a free fleet instead of one the holds fill until they expire."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    answers: list[list] = [[] for _ in range(clients)]
    errors: list[int] = [0] * clients
    barrier = threading.Barrier(clients + 1)
    deadline = [0.0]

    def worker(k: int) -> None:
        channel = grpc.insecure_channel(target)
        call = channel.unary_unary(method, request_serializer=placement_pb2.PlaceRequest.SerializeToString,
                                   response_deserializer=response_type.FromString)
        kept = answers[k] if release else None
        for i in range(warmup):
            resp = call(reqs[(k * 7919 + i) % len(reqs)], timeout=10)
            if kept is not None:
                kept.append(resp)
        barrier.wait()
        out = latencies[k]
        i = k * 104729
        for _ in range(MAX_CALLS_PER_CLIENT):
            if time.perf_counter() >= deadline[0]:
                break
            req = reqs[i % len(reqs)]
            i += 1
            t0 = time.perf_counter()
            try:
                resp = call(req, timeout=10)
            except grpc.RpcError:
                errors[k] += 1
            else:
                if kept is not None:
                    kept.append(resp)
            out.append(time.perf_counter() - t0)
        channel.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    deadline[0] = time.perf_counter() + 3600  # set for real once every client is warm
    barrier.wait()
    cpu0 = server_cpu_s(pid)
    began = time.perf_counter()
    deadline[0] = began + seconds
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    cpu1 = server_cpu_s(pid)
    if release:
        ids = [r for per in answers for resp in per for r in resp.decision.reservation_ids]
        with Client(target, timeout=60) as c:
            for lo in range(0, len(ids), 50_000):
                c.release(ids[lo:lo + 50_000])
    lat = sorted(x for per in latencies for x in per)
    return {
        "calls": len(lat), "errors": sum(errors), "seconds": elapsed, "per_s": len(lat) / elapsed,
        "p50_ms": 1000 * lat[len(lat) // 2], "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "mean_ms": 1000 * statistics.fmean(lat),
        "server_cpu_us": None if cpu0 is None or cpu1 is None else 1e6 * (cpu1 - cpu0) / max(len(lat), 1),
    }


def batched(target: str, regions: list[str], model: str, batch_size: int, calls: int, seconds: float,
            clients: int, pid: int | None = None) -> dict[bool, dict]:
    """PlaceBatch with real reservations, asking for the full and the compact (column by column) answer in turn,
    so both forms meet the same conditions. Each client releases its holds between calls (untimed), and the Place
    phases released theirs, so every call places onto the same free fleet, as the in-process engine baseline does.
    Returns the figures per form (False: full, True: compact); `calls` per form and client, at most."""
    rng = random.Random(7)
    payloads = [[types_pb2.Batch(id=str(i), region=rng.choice(regions), model=model,
                                 input_tokens=rng.randint(200, 4000), output_tokens=rng.randint(50, 800))
                 for i in range(batch_size)] for _ in range(3)]
    lock = threading.Lock()
    totals = {form: {"calls": 0, "decisions": 0, "placed": 0, "busy_s": 0.0, "server_solve_s": 0.0}
              for form in (False, True)}
    server_cpu: dict[bool, list[float]] = {False: [], True: []}  # per call, with one client (several overlap)
    end = time.perf_counter() + seconds

    def worker(k: int) -> None:
        with Client(target, timeout=60) as c:
            c.place_batch(payloads[0][:100], dry_run=True)  # warm the channel
            for j in range(2 * calls):
                if time.perf_counter() >= end:
                    break
                compact = bool((k + j) % 2)
                cpu0 = server_cpu_s(pid) if clients == 1 else None
                t0 = time.perf_counter()
                resp = c.place_batch(payloads[(k + j // 2) % len(payloads)], compact=compact)
                dt = time.perf_counter() - t0
                cpu1 = server_cpu_s(pid) if cpu0 is not None else None
                if cpu0 is not None and cpu1 is not None:
                    server_cpu[compact].append(cpu1 - cpu0)
                c.release(convert.reservation_ids_of(resp))
                with lock:
                    t = totals[compact]
                    t["calls"] += 1
                    t["decisions"] += convert.decision_count(resp)
                    t["placed"] += resp.placed
                    t["busy_s"] += dt
                    t["server_solve_s"] += resp.solve_seconds

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = {}
    for form, t in totals.items():
        # Placements per second of PlaceBatch time (the untimed releases left out) is what a caller sees.
        busy = max(t["busy_s"], 1e-9) / clients
        out[form] = {**t, "placements_per_s": t["placed"] / busy, "decisions_per_s": t["decisions"] / busy,
                     "ms_per_call": 1000 * t["busy_s"] / max(t["calls"], 1),
                     "server_cpu_ms": 1000 * statistics.median(server_cpu[form]) if server_cpu[form] else None}
    return out


def engine_baseline(topology: Path, regions: list[str], model: str, batch_size: int) -> dict:
    """The same work without gRPC, in this process (PlaceBatch with reservations, as served): how much of the time
    is the engine's own."""
    from scheduler.engine.core import Engine
    from scheduler.engine.request import Batch
    from scheduler.model.loader import load_topology

    loaded = load_topology(topology)
    engine = Engine.from_topology(loaded.value, loaded.version)
    rng = random.Random(3)
    single = [Batch(rng.choice(regions), model, rng.randint(200, 4000), rng.randint(50, 800)) for _ in range(2000)]
    for b in single[:100]:
        engine.place(b, hour=14, reserve=False)
    t0, c0 = time.perf_counter(), time.process_time()
    for b in single:
        engine.place(b, hour=14, reserve=False)
    place_us = (time.perf_counter() - t0) / len(single) * 1e6
    place_cpu_us = (time.process_time() - c0) / len(single) * 1e6
    many = [Batch(rng.choice(regions), model, rng.randint(200, 4000), rng.randint(50, 800)) for _ in range(batch_size)]
    engine.place_many(many, hour=14)
    runs, cpus = [], []
    for _ in range(3):
        engine.ledger.clear()  # as the served benchmark releases between calls
        t0, c0 = time.perf_counter(), time.process_time()
        r = engine.place_many(many, hour=14)
        runs.append((time.perf_counter() - t0, r.placed))
        cpus.append(time.process_time() - c0)
    best = min(runs)
    return {"engine_place_us": place_us, "engine_place_cpu_us": place_cpu_us,
            "engine_place_many_per_s": best[1] / best[0], "engine_place_many_cpu_ms": 1000 * min(cpus)}


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", type=Path,
                        default=DEFAULT_TOPOLOGY if DEFAULT_TOPOLOGY.exists() else TOPOLOGY_DIR / "tiny.yaml")
    parser.add_argument("--clients", type=int, default=4, help="concurrent Place clients (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=4.0, help="per latency phase (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=10_000, help="batches per PlaceBatch call")
    parser.add_argument("--batch-calls", type=int, default=12,
                        help="PlaceBatch calls per client and answer form (full and compact, in turn), at most")
    parser.add_argument("--batch-clients", type=int, default=1,
                        help="concurrent PlaceBatch clients (default: %(default)s; the server is one GIL)")
    parser.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_server:
        serve_echo(DEFAULT_WORKERS)
        return 0

    from scheduler.model.loader import load_topology

    topo = load_topology(args.topology).value
    regions, model = [r.id for r in topo.regions], topo.models[0].id
    py = sys.executable
    env_note = f"{os.cpu_count()} CPUs, loopback, {args.clients} client threads, {DEFAULT_WORKERS} server threads"
    print(f"grpc_load: topology {args.topology.name}; {env_note}", flush=True)

    echo_proc, echo_target = start([py, __file__, "--echo-server"])
    sched_proc, sched_target = start([py, "-m", "scheduler", "serve", "--topology", str(args.topology), "--port",
                                      "0", "--log-level", "warning"])
    try:
        reqs = requests_for(regions, model, 4096, seed=1)
        ep, sp = echo_proc.pid, sched_proc.pid
        echo1 = closed_loop(echo_target, ECHO_METHOD, reqs, placement_pb2.PlaceRequest, 1, args.seconds / 2, pid=ep)
        place1 = closed_loop(sched_target, ECHO_METHOD, reqs, placement_pb2.PlaceResponse, 1, args.seconds / 2,
                             pid=sp, release=True)
        echo = closed_loop(echo_target, ECHO_METHOD, reqs, placement_pb2.PlaceRequest, args.clients, args.seconds,
                           pid=ep)
        place = closed_loop(sched_target, ECHO_METHOD, reqs, placement_pb2.PlaceResponse, args.clients,
                            args.seconds, pid=sp, release=True)
        forms = batched(sched_target, regions, model, args.batch_size, args.batch_calls, 6 * args.seconds,
                        args.batch_clients, pid=sp)
        batch, compact = forms[False], forms[True]
    finally:
        stop(echo_proc)
        stop(sched_proc)
    engine = engine_baseline(args.topology, regions, model, args.batch_size)

    def row(name: str, r: dict) -> str:
        return (f"  {name:<6} {r['calls']:>7} calls  {r['per_s']:>8.0f}/s  p50 {r['p50_ms']:6.2f} ms  "
                f"p99 {r['p99_ms']:6.2f} ms  errors {r['errors']}")

    p99_ratio = place["p99_ms"] / echo["p99_ms"]
    print(f"Place vs echo, closed loop, one client ({args.seconds / 2:g} s each; for reference):")
    print(row("echo", echo1))
    print(row("Place", place1))
    print(f"  ratios: p50 {place1['p50_ms'] / echo1['p50_ms']:.2f}x  p99 {place1['p99_ms'] / echo1['p99_ms']:.2f}x")
    print(f"Place vs echo, closed loop, {args.clients} concurrent clients ({args.seconds:g} s each):")
    print(row("echo", echo))
    print(row("Place", place))
    print(f"  ratios: p50 {place['p50_ms'] / echo['p50_ms']:.2f}x  p99 {p99_ratio:.2f}x  "
          f"throughput {place['per_s'] / echo['per_s']:.2f}x   (target p99 <= {P99_TARGET:g}x: "
          f"{'met' if p99_ratio <= P99_TARGET else 'MISSED'})")
    cpu = {k: r["server_cpu_us"] for k, r in (("echo1", echo1), ("place1", place1), ("echo", echo), ("place", place))}
    if None not in cpu.values():
        print(f"  server CPU per call: one client echo {cpu['echo1']:.0f} us, Place {cpu['place1']:.0f} us "
              f"({cpu['place1'] / cpu['echo1']:.2f}x); {args.clients} clients echo {cpu['echo']:.0f} us, Place "
              f"{cpu['place']:.0f} us ({cpu['place'] / cpu['echo']:.2f}x)")
    print(f"  engine alone (in-process, no gRPC): place {engine['engine_place_us']:.0f} us "
          f"({engine['engine_place_cpu_us']:.0f} us CPU)")
    print(f"PlaceBatch, {args.batch_size} batches per call, {args.batch_clients} clients, real reservations:")
    for label, b in (("full answer   ", batch), ("compact answer", compact)):
        print(f"  {label} {b['calls']} calls, {b['ms_per_call']:.0f} ms per call, {b['placements_per_s']:.0f} "
              f"placements/s ({b['decisions_per_s']:.0f} decisions/s); server solver time "
              f"{1000 * b['server_solve_s'] / max(b['calls'], 1):.0f} ms per call"
              + (f"; server CPU {b['server_cpu_ms']:.0f} ms per call" if b["server_cpu_ms"] is not None else ""))
    best = max(batch["placements_per_s"], compact["placements_per_s"])
    print(f"  engine alone (in-process, no gRPC, same batches, reserving): "
          f"{engine['engine_place_many_per_s']:.0f} placements/s ({engine['engine_place_many_cpu_ms']:.0f} ms CPU per "
          f"call); served/engine: full "
          f"{batch['placements_per_s'] / engine['engine_place_many_per_s']:.2f}, compact "
          f"{compact['placements_per_s'] / engine['engine_place_many_per_s']:.2f}   "
          f"(target >= {BATCHED_TARGET:,.0f}/s: {'met' if best >= BATCHED_TARGET else 'MISSED'})")
    result = {
        "benchmark": "grpc_load", "topology": args.topology.name, "clients": args.clients, "cpus": os.cpu_count(),
        "echo_p50_ms": round(echo["p50_ms"], 3), "echo_p99_ms": round(echo["p99_ms"], 3),
        "echo_calls_per_s": round(echo["per_s"], 1),
        "place_p50_ms": round(place["p50_ms"], 3), "place_p99_ms": round(place["p99_ms"], 3),
        "place_calls_per_s": round(place["per_s"], 1), "place_errors": place["errors"],
        "place_p50_ratio_vs_echo": round(place["p50_ms"] / echo["p50_ms"], 3),
        "single_client_place_p99_ratio_vs_echo": round(place1["p99_ms"] / echo1["p99_ms"], 3),
        "place_p99_ratio_vs_echo": round(p99_ratio, 3),
        "place_throughput_ratio_vs_echo": round(place["per_s"] / echo["per_s"], 3),
        "batch_size": args.batch_size, "batched_calls": batch["calls"],
        # The headline is the faster answer form (both carry every field of every decision; the target counts it).
        "batched_placements_per_s": round(best, 1),
        "batched_form": "compact" if compact["placements_per_s"] >= batch["placements_per_s"] else "full",
        "batched_full_placements_per_s": round(batch["placements_per_s"], 1),
        "batched_decisions_per_s": round(batch["decisions_per_s"], 1),
        "batched_compact_calls": compact["calls"],
        "batched_compact_placements_per_s": round(compact["placements_per_s"], 1),
        "engine_place_us": round(engine["engine_place_us"], 1),
        "engine_place_cpu_us": round(engine["engine_place_cpu_us"], 1),
        "engine_place_many_cpu_ms": round(engine["engine_place_many_cpu_ms"], 1),
        "echo_server_cpu_us": _round(echo["server_cpu_us"]), "place_server_cpu_us": _round(place["server_cpu_us"]),
        "single_client_echo_server_cpu_us": _round(echo1["server_cpu_us"]),
        "single_client_place_server_cpu_us": _round(place1["server_cpu_us"]),
        "batched_server_cpu_ms": _round(batch["server_cpu_ms"]),
        "batched_compact_server_cpu_ms": _round(compact["server_cpu_ms"]),
        "engine_place_many_per_s": round(engine["engine_place_many_per_s"], 1),
        "place_p99_target_met": p99_ratio <= P99_TARGET,
        "batched_target_met": best >= BATCHED_TARGET,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
