"""What `serve --cluster URLS --replica NAME` asks for, checked once at start."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_LEASE_TTL_S = 3.0  # a replica silent this long loses its lease (its share returns once its holds end)
DEFAULT_REBALANCE_S = 1.0  # the leader's rebalancing period
DEFAULT_PREFIX = "/scheduler/"
# Without --max-hold, the longest hold a replica in cluster mode accepts: what a dead replica may still hold is
# bounded by it, so it cannot be unbounded there.
DEFAULT_MAX_HOLD_S = 3600.0
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class PeerTls:
    """How a replica that serves TLS reaches the others: the CA bundle their certificates are checked against
    (None: the system's roots), and the certificate and key it presents when they ask for one (mutual TLS)."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class ClusterSettings:
    endpoints: tuple[str, ...]  # host:port of etcd members
    replica: str
    advertise: str | None = None  # host:port the other replicas reach this one at (default: where it listens)
    lease_ttl_s: float = DEFAULT_LEASE_TTL_S
    rebalance_s: float = DEFAULT_REBALANCE_S
    prefix: str = DEFAULT_PREFIX
    peer_tls: PeerTls | None = None  # None: the replicas serve plaintext, and reach each other so

    @classmethod
    def parse(cls, urls: str, replica: str | None, **kw) -> ClusterSettings:
        """ValueError naming the flag for endpoints or names that cannot work."""
        endpoints = []
        for url in (u.strip() for u in urls.split(",")):
            parts = urlsplit(url if "//" in url else f"http://{url}")
            if parts.scheme not in ("http", "") or not parts.hostname:
                raise ValueError(f"--cluster: {url!r}: expected http://HOST:PORT (plain gRPC to etcd)")
            port = parts.port or 2379
            host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
            endpoints.append(f"{host}:{port}")
        if not replica or not NAME.match(replica):
            raise ValueError("--replica: a name of letters, digits and ._- (at most 64), stable across restarts")
        advertise = kw.get("advertise")
        if advertise is not None and not re.match(r"^[^\s:]+:\d+$|^\[[0-9a-fA-F:]+\]:\d+$", advertise):
            raise ValueError(f"--advertise: expected HOST:PORT, got {advertise!r}")
        for name in ("lease_ttl_s", "rebalance_s"):
            if name in kw and not kw[name] > 0:
                raise ValueError(f"--{name[:-2].replace('_', '-')}: must be > 0 seconds")
        if kw.get("lease_ttl_s", DEFAULT_LEASE_TTL_S) < 2 * kw.get("rebalance_s", DEFAULT_REBALANCE_S):
            raise ValueError("--lease-ttl: must be at least twice --rebalance-period (keepalives ride on it)")
        return cls(tuple(endpoints), replica, **kw)
