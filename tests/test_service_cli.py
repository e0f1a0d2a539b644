"""The commands as a person runs them: `serve` in its own process (drained by SIGTERM), `place` and `plan` against
it, and `demo` end to end."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from scheduler.cli import main
from scheduler.service.client import Client
from scheduler.v1 import types_pb2

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "topology" / "tiny.yaml"


def start_server(*extra: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "scheduler", "serve", "--topology", str(TINY), "--port", "0",
                             "--log-level", "warning", *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    match = re.search(r" on (\S+:\d+)$", line.strip())
    if not match:
        proc.kill()
        raise AssertionError(f"serve did not start: {line!r} {proc.stderr.read()}")
    return proc, match.group(1)


@pytest.fixture(scope="module")
def server():
    proc, target = start_server()
    yield target
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)


def test_place_prints_the_decision_and_its_explanation(server, capsys):
    code = main(["place", "--target", server, "--region", "singapore", "--model", "llm-70b",
                 "--input-tokens", "2000", "--output-tokens", "500", "--ttft-ms", "120", "--hour", "14", "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("PLACED  singapore -> llm-70b, 2000 in / 500 out x 1  [topology ")
    assert re.search(r"^site\s+(shantou|shaoguan)$", out, re.M)
    assert re.search(r"^path\s+singapore > tuas > .* > (shantou|shaoguan)$", out, re.M)
    assert re.search(r"^cables\s+cable-", out, re.M)
    assert re.search(r"^TTFT\s+\d+\.\d ms \(p95\), mean \d+\.\d ms$", out, re.M)  # the percentile's, and the mean
    assert re.search(r"^SLO\s+TTFT <= \d+ ms for 95 % of requests$", out, re.M)
    assert "Alternatives (feasible, cheapest first):" in out
    assert "Rejected sites (first constraint that ruled each out):" in out
    assert re.search(r"^zhongwei\s+ttft\s+ttft \d+ ms > SLO 120 ms on zhongwei/\S+$", out, re.M)  # its best pool


def test_place_errors_exit_non_zero_with_the_status(server, capsys):
    assert main(["place", "--target", server, "--region", "mars", "--model", "llm-70b"]) == 1
    assert capsys.readouterr().err.strip() == "error: INVALID_ARGUMENT: region: unknown region 'mars'"
    assert main(["place", "--target", server, "--region", "manila", "--ttft-ms", "40"]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("error: FAILED_PRECONDITION: ttft_ms: no site meets the SLO; closest miss: ")
    assert captured.out.startswith("NOT PLACED (ttft)") and "Rejected sites" in captured.out
    assert main(["place", "--target", "127.0.0.1:1", "--region", "manila", "--timeout", "2"]) == 1
    assert capsys.readouterr().err.startswith("error: UNAVAILABLE")


def test_plan_prints_the_routing_table(server, capsys, tmp_path):
    assert main(["plan", "--target", server, "--hour", "3"]) == 0
    out = capsys.readouterr().out
    assert "policy optimal" in out and "03:00 China time" in out
    assert re.search(r"^singapore\s+llm-70b\s+20000\s+\S+\s+\d+\.\d%", out, re.M)
    assert re.search(r"^manila\s+llm-70b\s+20000\s+", out, re.M)
    demand = tmp_path / "demand.yaml"
    demand.write_text("demand:\n  - {region: manila, model: llm-70b, tokens_per_s: 5000, ttft_ms: 900}\n")
    assert main(["plan", "--target", server, "--demand-file", str(demand), "--demand", "singapore::7000",
                 "--policy", "nearest"]) == 0
    out = capsys.readouterr().out
    assert "policy nearest" in out
    assert re.search(r"^singapore\s+llm-70b\s+7000\s", out, re.M) and re.search(r"^manila\s+llm-70b\s+5000\s", out, re.M)
    assert main(["plan", "--target", server, "--demand", "mars:llm-70b:10"]) == 1
    assert capsys.readouterr().err.strip() == "error: INVALID_ARGUMENT: demand[0].region: unknown region 'mars'"
    demand.write_text("demand:\n  - {region: manila, modle: llm-70b, tokens_per_s: 5}\n")
    assert main(["plan", "--target", server, "--demand-file", str(demand)]) == 2
    assert "demand[0].modle: unknown key" in capsys.readouterr().err


def test_sigterm_lets_in_flight_calls_finish_then_exits_cleanly():
    proc, target = start_server("--grace", "20")
    batches = [types_pb2.Batch(region=("singapore", "manila")[i % 2], model="llm-70b", input_tokens=200 + i % 500,
                               output_tokens=50 + i % 100) for i in range(1000)]
    result: dict[str, object] = {}
    started = threading.Event()

    def call() -> None:
        with Client(target, timeout=30) as c:
            c.wait_ready()
            started.set()
            try:
                # CP-SAT on this instance runs to its time limit: the call is still in flight when SIGTERM lands.
                result["resp"] = c.place_batch(batches, time_limit_ms=2500)
            except grpc.RpcError as e:
                result["error"] = e
            result["done_at"] = time.monotonic()

    t = threading.Thread(target=call)
    t.start()
    assert started.wait(10)
    threading.Event().wait(0.8)
    proc.send_signal(signal.SIGTERM)
    sent_at = time.monotonic()
    t.join(30)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "error" not in result, result.get("error")
    resp = result["resp"]
    assert len(resp.decisions) == 1000 and resp.placed > 0
    assert result["done_at"] > sent_at  # it really was in flight when the signal came, and it was let finish
    assert "SIGTERM: draining in-flight calls" in out and out.rstrip().endswith("stopped")


def test_serve_refuses_an_invalid_topology(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.read_text().replace("pue: 1.15", "pue: 0.5"))
    proc = subprocess.run([sys.executable, "-m", "scheduler", "serve", "--topology", str(bad), "--port", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    line = next(i for i, l in enumerate(bad.read_text().splitlines(), 1) if "pue: 0.5" in l)
    assert f"{bad}:{line}: sites[0].pue: " in proc.stderr


def test_demo_places_a_batch_per_region_and_prints_the_plan(capsys):
    assert main(["demo", "--topology", str(TINY)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^control plane on 127\.0\.0\.1:\d+: topology 'tiny' version \w+", out, re.M)
    assert re.search(r"^singapore\s+llm-70b\s+\w+\s+", out, re.M) and re.search(r"^manila\s+llm-70b\s+\w+\s", out, re.M)
    assert "Why singapore went to" in out and "Routing plan" in out
    assert out.rstrip().endswith("control plane stopped cleanly")
