"""Where cluster mode keeps things in etcd (all under the cluster's prefix), and their JSON encoding.

- `boots/counter`, `boots/<n>`: run numbers (the high bits of every reservation id) and the replica each belongs to
- `alive/<replica>`: under the replica's lease: its address and run; gone when the replica stops renewing it
- `claims/<replica>`: what the replica enforces per key (its limit, or its holds if above), its holds, the time by
  which they end; written by the replica (no lease: outlives it, so the leader keeps counting a dead one's share)
- `grants/<replica>`: its share per key, written only by the leader, fenced by the leader key
- `gone/<replica>`: when the leader first saw it dead (so a new leader waits out the same deadline)
- `links`: the operator's link changes, shared by every replica
- `secret`: random bytes, written once: replicas sign the calls they pass on to each other with it (peers.py)
- `leader`: the election (etcd's election service)
"""

from __future__ import annotations

import json
import math


class Keys:
    def __init__(self, prefix: str):
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"

    @property
    def boot_counter(self) -> str:
        return f"{self.prefix}boots/counter"

    def boot(self, n: int) -> str:
        return f"{self.prefix}boots/{n}"

    def alive(self, name: str = "") -> str:
        return f"{self.prefix}alive/{name}"

    def claims(self, name: str = "") -> str:
        return f"{self.prefix}claims/{name}"

    def grants(self, name: str = "") -> str:
        return f"{self.prefix}grants/{name}"

    def gone(self, name: str = "") -> str:
        return f"{self.prefix}gone/{name}"

    @property
    def secret(self) -> str:
        return f"{self.prefix}secret"

    @property
    def links(self) -> str:
        return f"{self.prefix}links"

    @property
    def election(self) -> str:
        return f"{self.prefix}leader"

    def name_of(self, key: str) -> str:
        return key.rsplit("/", 1)[-1]


def encode(doc: dict) -> bytes:
    """JSON with infinite amounts (unbounded cables) as null."""

    def clean(x):
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, float) and math.isinf(x):
            return None
        return x

    return json.dumps(clean(doc), separators=(",", ":")).encode()


def amounts(d: dict | None) -> dict[str, float]:
    return {k: math.inf if v is None else float(v) for k, v in (d or {}).items()}
