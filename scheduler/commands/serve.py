"""`scheduler serve`: run the gRPC control plane on a topology file until SIGTERM/SIGINT, then drain.

On SIGTERM (or SIGINT) health turns NOT_SERVING at once while calls are still served for `--drain-grace` seconds
(load balancers and round_robin clients move away); then the server stops accepting calls and lets the ones in
flight finish for up to `--grace` seconds. A second signal cuts the drain period short. At start the soft limit on
open files is raised to the hard limit (connections are bounded below it, see docs/production.md).

Every setting is a flag, and may also come from `--config FILE` (YAML, keys named like the flags: `tls_cert` or
`tls-cert`); a flag given on the command line wins over the file. Relative paths in the file are relative to it.
"""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from scheduler.model.loader import LoadError
from scheduler.paths import DEFAULT_TOPOLOGY
from scheduler.service import logs
from scheduler.service.placement import MAX_BATCHES
from scheduler.service.security import ConfigError, TlsFiles, TokenStore, check_exposure
from scheduler.service.server import (DEFAULT_DEADLINE_S, DEFAULT_DRAIN_S, DEFAULT_GRACE_S,
                                      DEFAULT_HANDSHAKE_TIMEOUT_S, DEFAULT_MAX_CONNECTION_AGE_S,
                                      DEFAULT_MAX_CONNECTION_IDLE_S, DEFAULT_PORT, DEFAULT_WORKERS, MAX_MESSAGE_BYTES,
                                      ControlPlane)
from scheduler.service.topology import DEFAULT_MAX_STREAM_AGE_S
from scheduler.cluster.settings import DEFAULT_LEASE_TTL_S, DEFAULT_REBALANCE_S, ClusterSettings, PeerTls

log = logging.getLogger("scheduler.serve")

# dest -> (built-in default, type); None defaults are "off".
SETTINGS: dict[str, tuple[Any, type]] = {
    "topology": (str(DEFAULT_TOPOLOGY), str),
    "host": ("127.0.0.1", str),
    "port": (DEFAULT_PORT, int),
    "workers": (DEFAULT_WORKERS, int),
    "grace": (DEFAULT_GRACE_S, float),
    "drain_grace": (DEFAULT_DRAIN_S, float),
    "log_level": ("info", str),
    "log_format": ("json", str),
    "tls_cert": (None, str),
    "tls_key": (None, str),
    "tls_client_ca": (None, str),
    "tokens": (None, str),
    "insecure": (False, bool),
    "max_message_bytes": (MAX_MESSAGE_BYTES, int),
    "max_batch": (MAX_BATCHES, int),
    "max_concurrent": (None, int),
    "default_deadline": (DEFAULT_DEADLINE_S, float),
    "metrics_port": (0, int),
    "metrics_host": ("127.0.0.1", str),
    "max_watches": (None, int),
    "max_watches_per_client": (None, int),
    "max_stream_age": (DEFAULT_MAX_STREAM_AGE_S, float),
    "max_connections": (None, int),
    "handshake_timeout": (DEFAULT_HANDSHAKE_TIMEOUT_S, float),
    "max_connection_idle": (DEFAULT_MAX_CONNECTION_IDLE_S, float),
    "max_connection_age": (DEFAULT_MAX_CONNECTION_AGE_S, float),
    "state_dir": (None, str),
    "max_hold": (None, float),
    "cluster": (None, str),
    "replica": (None, str),
    "advertise": (None, str),
    "lease_ttl": (DEFAULT_LEASE_TTL_S, float),
    "rebalance_period": (DEFAULT_REBALANCE_S, float),
    "peer_ca": (None, str),
    "peer_cert": (None, str),
    "peer_key": (None, str),
}
POSITIVE_SECONDS = ("max_stream_age", "handshake_timeout", "max_connection_idle", "max_connection_age")
PATHS = {"topology", "tls_cert", "tls_key", "tls_client_ca", "tokens", "state_dir", "peer_ca", "peer_cert", "peer_key"}
CHOICES = {"log_level": ("debug", "info", "warning", "error"), "log_format": ("json", "text")}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the placement and topology gRPC API (hot-reloads the topology file)",
                       description=__doc__.splitlines()[0])
    d = {k: v[0] for k, v in SETTINGS.items()}
    p.add_argument("--config", type=Path, help="YAML file of settings (keys named like the flags)")
    p.add_argument("--topology", help=f"topology YAML (default: {d['topology']})")
    p.add_argument("--host", help=f"address to listen on (default: {d['host']}); any other than loopback needs "
                                  "TLS and --tokens, or --insecure")
    p.add_argument("--port", type=int, help=f"port; 0 picks a free one (default: {d['port']})")
    p.add_argument("--workers", type=int, help=f"calls at work at once (default: {d['workers']})")
    p.add_argument("--grace", type=float,
                   help=f"seconds in-flight calls may take to finish on shutdown (default: {d['grace']:g})")
    p.add_argument("--drain-grace", type=float,
                   help=f"on SIGTERM, seconds to keep serving new calls after health turns NOT_SERVING, before "
                        f"the server stops accepting them; 0: none (default: {d['drain_grace']:g})")
    p.add_argument("--log-level", choices=CHOICES["log_level"], help="default: info")
    p.add_argument("--log-format", choices=CHOICES["log_format"],
                   help="json: one JSON object per line with the request id (default); text: for people")
    g = p.add_argument_group("security")
    g.add_argument("--tls-cert", help="PEM certificate chain of the server (turns TLS on, with --tls-key)")
    g.add_argument("--tls-key", help="PEM private key of the server")
    g.add_argument("--tls-client-ca", help="PEM CA bundle; clients must present a certificate it signed "
                                           "(mutual TLS)")
    g.add_argument("--tokens", help="token file (YAML: tokens: [{name, role: router|operator, sha256}]); "
                                    "calls then need `authorization: Bearer <token>`")
    g.add_argument("--insecure", action="store_true", default=None,
                   help="allow a non-loopback --host without TLS and tokens (never in production)")
    g = p.add_argument_group("limits")
    g.add_argument("--max-message-bytes", type=int,
                   help=f"largest request or response (default: {d['max_message_bytes']})")
    g.add_argument("--max-batch", type=int, help=f"most batches per PlaceBatch call (default: {d['max_batch']})")
    g.add_argument("--max-concurrent", type=int,
                   help="unary calls at work at once; more fail fast with RESOURCE_EXHAUSTED (default: --workers)")
    g.add_argument("--default-deadline", type=float,
                   help=f"seconds allowed to a call whose client set no deadline; 0: none "
                        f"(default: {d['default_deadline']:g})")
    g = p.add_argument_group("streams and connections")
    g.add_argument("--max-watches", type=int,
                   help="open WatchTopology streams in all; more: RESOURCE_EXHAUSTED (default: a quarter of "
                        "--workers, at least 1)")
    g.add_argument("--max-watches-per-client", type=int,
                   help="open WatchTopology streams per token name (per peer address without --tokens) "
                        "(default: half of --max-watches, at least 1)")
    g.add_argument("--max-stream-age", type=float,
                   help=f"seconds after which a WatchTopology stream is ended (OK) and the client opens a new one "
                        f"(default: {d['max_stream_age']:g})")
    g.add_argument("--max-connections", type=int,
                   help="connections open at once; more are closed as soon as accepted (default: the open-file "
                        "limit less a reserve)")
    g.add_argument("--handshake-timeout", type=float,
                   help=f"seconds a new connection has to finish TLS and send its HTTP/2 preface, else it is "
                        f"closed (default: {d['handshake_timeout']:g})")
    g.add_argument("--max-connection-idle", type=float,
                   help=f"seconds a connection may go without a call before it is closed (GOAWAY; clients "
                        f"reconnect) (default: {d['max_connection_idle']:g})")
    g.add_argument("--max-connection-age", type=float,
                   help=f"seconds after which a connection is recycled (GOAWAY, calls in flight finish) "
                        f"(default: {d['max_connection_age']:g})")
    g = p.add_argument_group("state and cluster")
    g.add_argument("--state-dir", help="directory where holds and the operator's link changes are kept across "
                                       "restarts (append-only log + snapshot, fsync'd); default: memory only")
    g.add_argument("--max-hold", type=float,
                   help="refuse batches that would hold capacity longer than this many seconds (default: no limit; "
                        "in cluster mode a dead replica's share returns this long after it died, so set it)")
    g.add_argument("--cluster", help="etcd endpoints, http://HOST:2379[,http://HOST2:2379...]: share the fleet's "
                                     "capacity with the other replicas (needs --replica)")
    g.add_argument("--replica", help="this replica's stable name in the cluster (the same across restarts)")
    g.add_argument("--advertise", help="HOST:PORT the other replicas reach this one at (default: --host:--port)")
    g.add_argument("--lease-ttl", type=float,
                   help=f"seconds a silent replica keeps its share before etcd lets it go "
                        f"(default: {DEFAULT_LEASE_TTL_S:g})")
    g.add_argument("--rebalance-period", type=float,
                   help=f"seconds between the leader's rebalancing of shares (default: {DEFAULT_REBALANCE_S:g})")
    g.add_argument("--peer-ca", help="with TLS: PEM CA bundle the other replicas' certificates are checked against "
                                     "(default: --tls-client-ca, else the system's roots)")
    g.add_argument("--peer-cert", help="with TLS: PEM certificate this replica presents to the others when they ask "
                                       "for one (mutual TLS; default: --tls-cert; needs the clientAuth usage)")
    g.add_argument("--peer-key", help="the --peer-cert's PEM private key (default: --tls-key)")
    g = p.add_argument_group("observability")
    g.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port; 0: off (default: 0)")
    g.add_argument("--metrics-host", help=f"address of the metrics endpoint (default: {d['metrics_host']})")
    p.set_defaults(func=run)


def read_config(path: Path) -> dict[str, Any]:
    try:
        doc = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    except YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping of setting: value")
    out: dict[str, Any] = {}
    for raw, value in doc.items():
        key = str(raw).replace("-", "_")
        if key not in SETTINGS:
            raise ConfigError(f"{path}: {raw}: unknown setting; known: {', '.join(sorted(SETTINGS))}")
        kind = SETTINGS[key][1]
        if value is not None:
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ConfigError(f"{path}: {raw}: expected {kind.__name__}, got {value!r}")
            if key in CHOICES and value not in CHOICES[key]:
                raise ConfigError(f"{path}: {raw}: must be one of {', '.join(CHOICES[key])}")
            if key in PATHS:
                value = str((path.parent / value)) if not Path(value).is_absolute() else value
        out[key] = value
    return out


def resolve(args: argparse.Namespace) -> dict[str, Any]:
    """Command line, else the config file, else the built-in default."""
    config = read_config(args.config) if getattr(args, "config", None) else {}
    out = {}
    for key, (default, _) in SETTINGS.items():
        given = getattr(args, key, None)
        out[key] = given if given is not None else config.get(key, default)
    return out


def check(s: dict[str, Any]) -> tuple[TlsFiles | None, TokenStore | None]:
    """ConfigError for settings that cannot be served; else the TLS files and token store they name."""
    if (s["tls_cert"] is None) != (s["tls_key"] is None):
        raise ConfigError("TLS: give both --tls-cert and --tls-key")
    if s["tls_client_ca"] and not s["tls_cert"]:
        raise ConfigError("TLS: --tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
    tls = (TlsFiles(Path(s["tls_cert"]), Path(s["tls_key"]), Path(s["tls_client_ca"]) if s["tls_client_ca"] else None)
           if s["tls_cert"] else None)
    tokens = TokenStore.load(s["tokens"]) if s["tokens"] else None
    for name in ("max_message_bytes", "max_batch", "workers"):
        if s[name] < 1:
            raise ConfigError(f"--{name.replace('_', '-')}: must be at least 1")
    if s["max_concurrent"] is not None and s["max_concurrent"] < 1:
        raise ConfigError("--max-concurrent: must be at least 1")
    if not s["default_deadline"] >= 0:
        raise ConfigError("--default-deadline: must be >= 0")
    for name in ("max_watches", "max_watches_per_client", "max_connections"):
        if s[name] is not None and s[name] < 1:
            raise ConfigError(f"--{name.replace('_', '-')}: must be at least 1")
    for name in POSITIVE_SECONDS:
        if not s[name] > 0:
            raise ConfigError(f"--{name.replace('_', '-')}: must be > 0 seconds")
    for name in ("grace", "drain_grace"):
        if not s[name] >= 0:
            raise ConfigError(f"--{name.replace('_', '-')}: must be >= 0 seconds")
    if not 0 <= s["metrics_port"] < 65536:
        raise ConfigError("--metrics-port: must be 0 (off) or a port number")
    check_exposure(s["host"], tls is not None, tokens is not None, bool(s["insecure"]))
    if s["max_hold"] is not None and not s["max_hold"] > 0:
        raise ConfigError("--max-hold: must be > 0 seconds")
    if (s["cluster"] is None) != (s["replica"] is None):
        raise ConfigError("--cluster and --replica go together: the etcd endpoints and this replica's name")
    if (s["peer_cert"] is None) != (s["peer_key"] is None):
        raise ConfigError("TLS: give both --peer-cert and --peer-key")
    if any(s[k] for k in ("peer_ca", "peer_cert")) and not (s["cluster"] and s["tls_cert"]):
        raise ConfigError("TLS: --peer-ca/--peer-cert are for replicas that serve TLS in cluster mode (--cluster, "
                          "--tls-cert)")
    if s["cluster"] is not None:
        cluster_settings(s)  # ConfigError naming the flag
    return tls, tokens


def cluster_settings(s: dict[str, Any]) -> ClusterSettings | None:
    if s["cluster"] is None:
        return None
    try:
        peer_tls = None
        if s["tls_cert"] is not None:
            peer_tls = PeerTls(s["peer_ca"] or s["tls_client_ca"], s["peer_cert"] or s["tls_cert"],
                               s["peer_key"] or s["tls_key"])
        return ClusterSettings.parse(s["cluster"], s["replica"], advertise=s["advertise"], lease_ttl_s=s["lease_ttl"],
                                     rebalance_s=s["rebalance_period"], peer_tls=peer_tls)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def build(s: dict[str, Any]) -> ControlPlane:
    """The control plane the settings describe (ConfigError, LoadError or OSError when they cannot be served)."""
    tls, tokens = check(s)
    return ControlPlane(
        s["topology"], host=s["host"], port=s["port"], workers=s["workers"], tls=tls, tokens=tokens,
        insecure=bool(s["insecure"]), max_message_bytes=s["max_message_bytes"], max_batch=s["max_batch"],
        max_concurrent=s["max_concurrent"], default_deadline_s=s["default_deadline"] or None,
        metrics_port=s["metrics_port"] or None, metrics_host=s["metrics_host"],
        max_watches=s["max_watches"], max_watches_per_client=s["max_watches_per_client"],
        max_stream_age_s=s["max_stream_age"], max_connections=s["max_connections"],
        handshake_timeout_s=s["handshake_timeout"], max_connection_idle_s=s["max_connection_idle"],
        max_connection_age_s=s["max_connection_age"], state_dir=s["state_dir"], max_hold_s=s["max_hold"],
        cluster=cluster_settings(s))


def raise_open_file_limit() -> tuple[int, int] | None:
    """Raise the soft RLIMIT_NOFILE to the hard limit (each connection takes a descriptor); returns (before,
    after), or None where there is no such limit or it cannot be changed."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return soft, soft
    # An unlimited hard limit may not be a valid soft one (macOS caps it): then try a large finite one.
    for target in (hard, 1 << 20) if hard == resource.RLIM_INFINITY else (hard,):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return soft, target
        except (ValueError, OSError):
            continue
    return soft, soft


def run(args: argparse.Namespace) -> int:
    try:
        s = resolve(args)
        check(s)  # before logging is set up: a refused start leaves the process as it found it
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    logs.setup(s["log_level"], s["log_format"])
    limits = raise_open_file_limit()  # before build: the connection cap is derived from it
    if limits is not None:
        log.info("open files: soft limit %d (was %d)", limits[1], limits[0],
                 extra={"nofile": limits[1], "nofile_before": limits[0]})
    try:
        plane = build(s)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except LoadError as e:
        print(e, file=sys.stderr)
        print(f"{len(e.problems)} problem(s) in {s['topology']}; not serving", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    stop = threading.Event()
    received: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    # Everything built so far (topology, catalog, routes, modules) lives as long as the process: move it out of
    # the cyclic collector's reach, so the collections a large PlaceBatch triggers do not rescan it every time
    # (measured: 10k-batch place_many ~15-25 % faster and steadier on the default topology).
    gc.freeze()
    try:
        plane.start()
    except OSError as e:  # the metrics port is taken
        plane.stop(0)
        print(f"error: metrics: {e}", file=sys.stderr)
        return 1
    if plane.tls is None and s["tokens"] is None:
        log.warning("no TLS and no tokens: any caller that reaches %s may place and operate (fine on loopback "
                    "for development; see docs/production.md)", plane.target)
    print(f"serving {plane.state.path} (version {plane.state.version}) on {plane.target}", flush=True)
    if plane.metrics_port:
        host = s["metrics_host"]
        print(f"metrics on http://{f'[{host}]' if ':' in host else host}:{plane.metrics_port}/metrics", flush=True)
    while not stop.wait(0.5):
        pass
    if s["drain_grace"] > 0:
        plane.drain()  # health NOT_SERVING now; calls are still served
        print(f"{received[0]}: health NOT_SERVING; still serving new calls for {s['drain_grace']:g} s", flush=True)
        stop.clear()
        ends = time.monotonic() + s["drain_grace"]
        while (left := ends - time.monotonic()) > 0 and not stop.wait(min(0.5, left)):
            pass  # a second signal ends the drain period early
    print(f"{received[0]}: draining in-flight calls (up to {s['grace']:g} s)", flush=True)
    plane.stop(s["grace"])
    print("stopped", flush=True)
    return 0
