"""The fault benchmark's short version (benchmarks/cluster.py --quick): etcd + 3 replicas under round_robin load, a
replica kill -9'd and restarted, a cable cut, the leader kill -9'd. No overcommit, no SLO break, no wrong release,
every client served again within 5 s."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_fault_benchmark_keeps_the_invariants():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cluster.py"), "--quick"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["overcommit_max"] == 0, out.stderr
    assert result["slo_breaks"] == 0 and result["wrong_releases"] == 0, out.stderr
    assert result["failover_s"] <= 5.0, out.stderr
