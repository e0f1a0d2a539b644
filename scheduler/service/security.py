"""Who may call what: TLS (and mutual TLS) credentials, per-router bearer tokens checked against a file of SHA-256
digests, and roles.

A token file is YAML; it holds digests only, never a token:

    tokens:
      - {name: router-sg-1, role: router,   sha256: 9f86d081884c7d65...}
      - {name: ops-oncall,  role: operator, sha256: 60303ae22b998861...}
      - {name: batch-jobs,  role: router,   sha256: 2c26b46b68ffc68f..., quota: 64}

`quota` (optional): the most accelerators the token's live holds may take at once, on this replica (in cluster
mode each replica checks it on its own holds); past it, placements fail RESOURCE_EXHAUSTED naming "quota".

Make a token and its entry with `python -m scheduler.service.security new-token NAME ROLE` (the token is printed
once, on stderr). Callers send `authorization: Bearer <token>` in call metadata; the server hashes what it gets
and looks the digest up. Routers may place, plan, release and read; operators may also change state.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import re
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

# --- roles and permissions ---------------------------------------------------------------------------------------
PLACE = "place"  # Place, PlaceBatch, GetPlan, Release
READ = "read"  # GetTopology, WatchTopology, reflection
OPERATE = "operate"  # anything that changes what is served: OperatorService
ROLES: dict[str, frozenset[str]] = {
    "router": frozenset({PLACE, READ}),
    "operator": frozenset({PLACE, READ, OPERATE}),
}
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@/-]{0,127}$")


class ConfigError(ValueError):
    """A security setting the server cannot start with (the message names the file and entry, never a secret)."""


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    quota: float | None = None  # accelerators its live holds may take (None: no limit)

    @property
    def permissions(self) -> frozenset[str]:
        return ROLES[self.role]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenStore:
    """Token digests -> principals. Lookups hash the presented token; the plaintext is never kept."""

    def __init__(self, principals: dict[str, Principal]):
        self._by_digest = dict(principals)

    def __len__(self) -> int:
        return len(self._by_digest)

    def lookup(self, token: str) -> Principal | None:
        return self._by_digest.get(hash_token(token))

    @classmethod
    def load(cls, path: str | Path) -> TokenStore:
        path = Path(path)
        try:
            doc = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: cannot read the token file: {e}") from None
        except YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
        entries = doc.get("tokens") if isinstance(doc, dict) else None
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"{path}: tokens: expected a non-empty list of {{name, role, sha256}}")
        out: dict[str, Principal] = {}
        names: set[str] = set()
        for i, e in enumerate(entries):
            where = f"{path}: tokens[{i}]"
            if not isinstance(e, dict):
                raise ConfigError(f"{where}: expected a mapping with name, role and sha256")
            unknown = set(e) - {"name", "role", "sha256", "quota"}
            if unknown:
                hint = " (store the sha256 of the token, never the token)" if "token" in unknown else ""
                raise ConfigError(f"{where}.{sorted(unknown)[0]}: unknown key{hint}")
            name, role, digest = e.get("name"), e.get("role"), e.get("sha256")
            if not isinstance(name, str) or not NAME.match(name):
                raise ConfigError(f"{where}.name: a name of letters, digits and ._@/- is required")
            if name in names:
                raise ConfigError(f"{where}.name: {name!r} appears twice")
            if role not in ROLES:
                raise ConfigError(f"{where}.role: must be one of {', '.join(ROLES)}, got {role!r}")
            if not isinstance(digest, str) or not SHA256_HEX.match(digest.lower()):
                raise ConfigError(f"{where}.sha256: must be 64 hex digits (the SHA-256 of the token)")
            if digest.lower() in out:
                raise ConfigError(f"{where}.sha256: the same token as {out[digest.lower()].name!r}")
            quota = e.get("quota")
            if quota is not None and (isinstance(quota, bool) or not isinstance(quota, (int, float))
                                      or not quota >= 0 or quota == float("inf")):
                raise ConfigError(f"{where}.quota: must be a number of accelerators >= 0, got {quota!r}")
            names.add(name)
            out[digest.lower()] = Principal(name, role, None if quota is None else float(quota))
        return cls(out)


def bearer(metadata: tuple | None) -> str | None:
    """The token in `authorization: Bearer <token>`, or None when absent or malformed."""
    for key, value in metadata or ():
        if key == "authorization":
            if isinstance(value, bytes):
                return None
            scheme, _, token = value.partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


# --- TLS -----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the server's certificate chain and key, and optionally the CA that client certificates must be
    signed by (mutual TLS: a client without one cannot even connect)."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def _read(self) -> tuple[bytes, bytes, bytes | None]:
        try:
            cert, key = self.cert.read_bytes(), self.key.read_bytes()
            ca = self.client_ca.read_bytes() if self.client_ca else None
        except OSError as e:
            raise ConfigError(f"TLS: cannot read {e.filename}: {e.strerror}") from None
        for name, data in (("certificate", cert), ("key", key), ("client CA", ca)):
            if data is not None and b"-----BEGIN " not in data:
                raise ConfigError(f"TLS: the {name} file is not PEM")
        return cert, key, ca

    def server_credentials(self) -> grpc.ServerCredentials:
        """Credentials that re-read the files at each new connection's handshake and switch to a changed pair, so
        certificates rotate without a restart (files of a few KB: reading them is cheaper than trusting mtimes)."""
        current = self._read()
        initial = grpc.ssl_server_certificate_configuration([(current[1], current[0])], root_certificates=current[2])
        seen = [current]

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            try:
                now = self._read()
            except ConfigError:
                return None  # half-written during a rotation: keep the current pair, look again next handshake
            if now == seen[0]:
                return None
            seen[0] = now
            cert, key, ca = now
            return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

        return grpc.dynamic_ssl_server_credentials(initial, fetch,
                                                   require_client_authentication=current[2] is not None)


def channel_credentials(ca: str | Path | None = None, cert: str | Path | None = None,
                        key: str | Path | None = None) -> grpc.ChannelCredentials:
    """Client side: trust `ca` (default: the system roots); present `cert`/`key` for mutual TLS."""
    if (cert is None) != (key is None):
        raise ConfigError("TLS: give both a client certificate and its key, or neither")
    try:
        root = Path(ca).read_bytes() if ca else None
        chain = Path(cert).read_bytes() if cert else None
        private = Path(key).read_bytes() if key else None
    except OSError as e:
        raise ConfigError(f"TLS: cannot read {e.filename}: {e.strerror}") from None
    return grpc.ssl_channel_credentials(root_certificates=root, private_key=private, certificate_chain=chain)


# --- exposure ------------------------------------------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost; anything else (0.0.0.0, [::], a LAN address, a name) is reachable from
    elsewhere."""
    h = host.strip("[]")
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, tls: bool, tokens: bool, insecure: bool) -> None:
    """Refuse to serve a non-loopback address without TLS and tokens, unless explicitly told to."""
    if is_loopback(host) or insecure or (tls and tokens):
        return
    missing = " and ".join(m for m, on in (("TLS (--tls-cert/--tls-key)", tls), ("tokens (--tokens)", tokens))
                           if not on)
    raise ConfigError(f"refusing to serve {host} without {missing}: anyone who can reach it could steer traffic. "
                      f"Turn them on (docs/production.md), listen on 127.0.0.1, or pass --insecure to accept it")


# --- `python -m scheduler.service.security new-token NAME ROLE` ------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scheduler.service.security",
                                     description="Make a bearer token and its token-file entry.")
    sub = parser.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new-token", help="print a new token (stderr) and its YAML entry (stdout)")
    new.add_argument("name")
    new.add_argument("role", choices=sorted(ROLES))
    digest = sub.add_parser("hash", help="print the sha256 entry of a token read from stdin")
    digest.add_argument("name")
    digest.add_argument("role", choices=sorted(ROLES))
    args = parser.parse_args(argv)
    if not NAME.match(args.name):
        parser.error("name: letters, digits and ._@/- only")
    if args.command == "new-token":
        token = secrets.token_urlsafe(32)
        print(f"token for {args.name} (shown once; give it to the caller, store it nowhere else): {token}",
              file=sys.stderr)
    else:
        token = sys.stdin.readline().strip()
        if not token:
            parser.error("no token on stdin")
    print(f"  - {{name: {args.name}, role: {args.role}, sha256: {hash_token(token)}}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
