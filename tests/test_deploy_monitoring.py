"""The shipped dashboard and alert rules against a real Prometheus scraping a real `scheduler serve` under load.

Prometheus (Debian's package, as `make test` installs it) runs on a free loopback port with its own data directory
and a 1 s scrape interval; it loads deploy/prometheus/alerts.yaml itself. Every dashboard expression and every alert
rule's quantity (the expression left of its threshold) must return data through /api/v1/query; every full alert
expression must parse, and every rule must evaluate without error inside Prometheus.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from ruamel.yaml import YAML

from scheduler.paths import ROOT
from scheduler.service.client import Client
from scheduler.v1 import types_pb2
from tests.conftest import TINY
from tests.etcd_server import EtcdServer

DASHBOARD = ROOT / "deploy" / "grafana" / "scheduler.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
# What Grafana would put in for the dashboard's variables: the job Prometheus scrapes, every replica.
VARIABLES = {"$__rate_interval": "1m", "$job": "scheduler", "$instance": ".+"}
WAIT_S = 90.0  # the most the test waits for the series to appear; it goes on as soon as they have


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


class Prometheus:
    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"

    def query(self, expr: str) -> dict:
        """The API's answer, errors included (a bad expression is a 400 with a JSON body)."""
        try:
            return get_json(f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        except urllib.error.HTTPError as e:
            return json.loads(e.read())

    def has_data(self, expr: str) -> bool:
        answer = self.query(expr)
        return answer["status"] == "success" and bool(answer["data"]["result"])


def start_server(topology: Path, metrics_port: int, cluster: str) -> tuple[subprocess.Popen, str]:
    """A replica in cluster mode (a one-replica cluster on a real etcd), so the cluster gauges exist too."""
    proc = subprocess.Popen([sys.executable, "-m", "scheduler", "serve", "--topology", str(topology), "--port", "0",
                             "--metrics-port", str(metrics_port), "--log-level", "warning",
                             "--cluster", cluster, "--replica", "monitored"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    serving, metrics = proc.stdout.readline(), proc.stdout.readline()
    match = re.search(r" on (\S+:\d+)$", serving.strip())
    if not match or f":{metrics_port}/metrics" not in metrics:
        proc.kill()
        raise AssertionError(f"serve did not start: {serving!r} {metrics!r} {proc.stderr.read()}")
    return proc, match.group(1)


def start_prometheus(tmp_path: Path, metrics_port: int) -> tuple[subprocess.Popen, Prometheus]:
    binary = shutil.which("prometheus")
    assert binary, "prometheus not found: install Debian's prometheus package (`make test` does it when missing)"
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [{"job_name": "scheduler",
                            "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}],
    }))
    port = free_port()
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    prom = Prometheus(port)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"prometheus exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{prom.base}/-/ready", timeout=2) as r:
                if r.status == 200:
                    return proc, prom
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("prometheus did not become ready")


def sg(**kw) -> types_pb2.Batch:
    return types_pb2.Batch(**{**dict(region="singapore", model="llm-70b", input_tokens=2000, output_tokens=500), **kw})


def load(target: str, topology: Path, stop: threading.Event) -> None:
    """Every kind of call the metrics count: placements placed and refused, bad requests, batches, plans, reads,
    an applied and a refused reload, a cable cut; then Place calls until told to stop."""
    with Client(target, timeout=30) as c:
        text = topology.read_text()
        topology.write_text(text.replace("pue: 1.15", "pue: 1.2"))
        assert c.reload_topology().result.ok
        topology.write_text(text.replace("pue: 1.15", "pue: 0.5"))
        assert not c.reload_topology().result.ok
        c.set_link_status(["cable-b"], up=False)
        while not stop.is_set():
            c.place(sg(), dry_run=False)
            for bad in (sg(ttft_ms=5), sg(region="mars")):
                with pytest.raises(grpc.RpcError):
                    c.place(bad)
            c.place_batch([sg(), sg(region="manila"), sg(requests=1_000_000)])
            c.get_plan([types_pb2.DemandCell(region="singapore", model="llm-70b", tokens_per_s=5000)], hour=14)
            c.get_topology()
            stop.wait(0.2)


def wait_for_share(target: str, timeout_s: float = 60.0) -> None:
    """Until the cluster's leader has granted this replica a share of every pool (it places nothing before)."""
    deadline = time.monotonic() + timeout_s
    with Client(target, timeout=10) as c:
        while time.monotonic() < deadline:
            pools = [p for s in c.get_topology().topology.sites for p in s.pools]
            if pools and all(p.HasField("share") and p.share > 0 for p in pools):
                return
            time.sleep(0.2)
    raise AssertionError("no share granted within the timeout")


@pytest.fixture(scope="module")
def monitored(tmp_path_factory) -> Iterator[Prometheus]:
    tmp_path = tmp_path_factory.mktemp("monitoring")
    topology = tmp_path / "topology.yaml"
    topology.write_text(TINY.read_text())
    metrics_port = free_port()
    etcd = EtcdServer().start()
    try:
        server, target = start_server(topology, metrics_port, etcd.url)
    except BaseException:
        etcd.stop()
        raise
    wait_for_share(target)
    prometheus = None
    stop = threading.Event()
    failure: list[BaseException] = []

    def run_load() -> None:
        try:
            load(target, topology, stop)
        except BaseException as e:  # reported by the test, not lost in the thread
            failure.append(e)

    thread = threading.Thread(target=run_load, daemon=True)
    try:
        prometheus, prom = start_prometheus(tmp_path, metrics_port)
        thread.start()
        yield prom
        assert not failure, failure
    finally:
        stop.set()
        thread.join(timeout=30)
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(timeout=30)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        etcd.stop()


def dashboard_expressions() -> list[tuple[str, str]]:
    """(panel title, PromQL with the variables filled in) for every target of every panel."""
    doc = json.loads(DASHBOARD.read_text())
    out = []
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in VARIABLES.items():
                expr = expr.replace(name, value)
            assert "$" not in expr, f"{panel['title']}: an unknown variable in {expr}"
            out.append((panel["title"], expr))
    return out


def variable_queries() -> list[str]:
    """Each `label_values(selector, label)` variable as the selector, which must have series carrying the label."""
    doc = json.loads(DASHBOARD.read_text())
    out = []
    for var in doc["templating"]["list"]:
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"]["query"])
            assert m, var
            selector = m.group(1)
            for name, value in VARIABLES.items():
                selector = selector.replace(name, value)
            out.append(f'count by ({m.group(2)}) ({selector})')
    return out


COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)")


def quantity(expr: str) -> str:
    """The left side of an alert's top-level comparison (its threshold), skipping label matchers and brackets."""
    depth, cut = 0, None
    i = 0
    while i < len(expr):
        ch = expr[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == '"':
            i = expr.index('"', i + 1)
        elif depth == 0 and (m := COMPARISON.match(expr, i)):
            cut = i
            i += len(m.group(1))
            continue
        i += 1
    assert cut is not None, f"no threshold in {expr!r}"
    return expr[:cut].strip()


def alert_rules() -> list[dict]:
    doc = YAML(typ="safe").load(ALERTS.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def wait_for_data(prom: Prometheus, exprs: list[str]) -> list[str]:
    """Poll until every expression returns data (or the wait runs out); returns those that still return none."""
    missing = list(exprs)
    deadline = time.monotonic() + WAIT_S
    while missing and time.monotonic() < deadline:
        missing = [e for e in missing if not prom.has_data(e)]
        if missing:
            time.sleep(1.0)
    return missing


def test_quantity_is_the_left_of_the_threshold():
    assert quantity('scheduler_cable_up{a!="b"} == 0') == 'scheduler_cable_up{a!="b"}'
    assert quantity("(a / on (m) group_left b or c * 0) > 0.01") == "(a / on (m) group_left b or c * 0)"
    assert quantity('histogram_quantile(0.99, sum by (le) (rate(x{m=~"a|b"}[5m]))) > 0.02').endswith("[5m])))")


def test_every_dashboard_expression_and_alert_returns_data_from_a_real_prometheus(monitored):
    prom = monitored
    panels = dashboard_expressions()
    rules = alert_rules()
    assert len(panels) >= 15 and len(rules) >= 10
    wanted = [e for _, e in panels] + variable_queries() + [quantity(r["expr"]) for r in rules]
    missing = wait_for_data(prom, wanted)
    assert not missing, "no data for:\n" + "\n".join(missing)
    # The full alert expressions parse and evaluate (firing or not).
    for r in rules:
        answer = prom.query(r["expr"])
        assert answer["status"] == "success", (r["alert"], answer)
    # Prometheus loaded every rule from the shipped file, and each evaluates without error.
    deadline = time.monotonic() + WAIT_S
    while True:
        groups = get_json(f"{prom.base}/api/v1/rules")["data"]["groups"]
        loaded = {r["name"]: r for g in groups for r in g["rules"]}
        if all(not r["lastEvaluation"].startswith("0001-") for r in loaded.values()) or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert set(loaded) == {r["alert"] for r in rules}
    assert all(r["health"] == "ok" for r in loaded.values()), {n: r.get("lastError") for n, r in loaded.items()}
    # The load cut cable-b, and the scrape carries it to the alert's expression.
    cut = prom.query('scheduler_cable_up{job="scheduler"} == 0')["data"]["result"]
    assert [s["metric"]["cable"] for s in cut] == ["cable-b"]
