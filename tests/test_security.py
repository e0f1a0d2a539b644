"""Security against a real server on loopback: TLS and mutual TLS (certificates made here with `cryptography`),
bearer tokens by role (routers place and read, operators also change state), the token never in a log line or an
answer, token-file validation, and the refusal to serve a non-loopback address without TLS and tokens."""

from __future__ import annotations

import datetime
import io
import ipaddress
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from scheduler.cli import main
from scheduler.service import logs
from scheduler.service.client import Client, error_field, read_token
from scheduler.service.security import (ConfigError, TlsFiles, TokenStore, check_exposure, hash_token, is_loopback)
from scheduler.service.security import main as security_main
from scheduler.service.server import PLACEMENT_SERVICE, ControlPlane
from scheduler.v1 import placement_pb2, topology_pb2, types_pb2

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "topology" / "tiny.yaml"
ROUTER_TOKEN = "router-secret-5b0c7e1d9a"
OPERATOR_TOKEN = "operator-secret-93f1c2aa47"
STRANGER_TOKEN = "stranger-secret-0d6e2b8f11"
OTHER_ROUTER_TOKEN = "router-secret-jkt-77aa01"


# --- certificates ------------------------------------------------------------------------------------------------
def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(subject: str, key, issuer: tuple[x509.Certificate, object] | None, ca: bool = False,
          server: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, signer = (issuer[0].subject, issuer[1]) if issuer else (name, key)
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                          content_commitment=False, key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, encipher_only=False, decipher_only=False),
                            critical=True)
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        b = b.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return b.sign(signer, hashes.SHA256())


class Pki:
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate, as PEM files in `root`."""

    def __init__(self, root: Path, tag: str):
        root.mkdir(parents=True, exist_ok=True)
        ca_key = _key()
        ca = _cert(f"scheduler test CA {tag}", ca_key, None, ca=True)
        self.ca = root / f"ca-{tag}.pem"
        self.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        for kind in ("server", "client"):
            key = _key()
            cert = _cert(f"{kind}-{tag}", key, (ca, ca_key), server=kind == "server")
            (root / f"{kind}-{tag}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            (root / f"{kind}-{tag}.key").write_bytes(_pem_key(key))
        self.server_cert, self.server_key = root / f"server-{tag}.pem", root / f"server-{tag}.key"
        self.client_cert, self.client_key = root / f"client-{tag}.pem", root / f"client-{tag}.key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"), "main")


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki-other"), "other")


def token_file(path: Path) -> Path:
    path.write_text("tokens:\n"
                    f"  - {{name: router-sg-1, role: router, sha256: {hash_token(ROUTER_TOKEN)}}}\n"
                    f"  - {{name: ops-oncall, role: operator, sha256: {hash_token(OPERATOR_TOKEN).upper()}}}\n"
                    f"  - {{name: router-jkt-1, role: router, sha256: {hash_token(OTHER_ROUTER_TOKEN)}}}\n")
    return path


@pytest.fixture(scope="module")
def tokens(tmp_path_factory) -> Path:
    return token_file(tmp_path_factory.mktemp("tokens") / "tokens.yaml")


def sg(**kw) -> types_pb2.Batch:
    return types_pb2.Batch(**{**dict(region="singapore", model="llm-70b", input_tokens=2000, output_tokens=500), **kw})


def rpc_error(call, *args, **kw) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kw)
    return info.value


def localhost(plane: ControlPlane) -> str:
    return f"localhost:{plane.port}"


# --- TLS -----------------------------------------------------------------------------------------------------------
def test_tls_serves_clients_that_trust_its_ca_and_no_one_else(pki, other_pki):
    with ControlPlane(TINY, port=0, tls=TlsFiles(pki.server_cert, pki.server_key)) as plane:
        with Client(localhost(plane), timeout=10, ca=pki.ca) as c:
            assert c.place(sg(), dry_run=True).decision.placed
        with Client(localhost(plane), timeout=3) as plain:  # no TLS at all: the handshake never completes
            assert rpc_error(plain.get_topology).code() == grpc.StatusCode.UNAVAILABLE
        with Client(localhost(plane), timeout=3, ca=other_pki.ca) as wrong:  # a certificate it cannot verify
            assert rpc_error(wrong.get_topology).code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_needs_a_client_certificate_signed_by_the_client_ca(pki, other_pki):
    tls = TlsFiles(pki.server_cert, pki.server_key, client_ca=pki.ca)
    with ControlPlane(TINY, port=0, tls=tls) as plane:
        with Client(localhost(plane), timeout=10, ca=pki.ca, cert=pki.client_cert, key=pki.client_key) as c:
            assert c.get_topology().topology.name == "tiny"
        with Client(localhost(plane), timeout=3, ca=pki.ca) as anonymous:
            assert rpc_error(anonymous.get_topology).code() == grpc.StatusCode.UNAVAILABLE
        with Client(localhost(plane), timeout=3, ca=pki.ca, cert=other_pki.client_cert,
                    key=other_pki.client_key) as forged:
            assert rpc_error(forged.get_topology).code() == grpc.StatusCode.UNAVAILABLE


def test_certificates_rotate_without_a_restart(tmp_path, pki):
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    cert.write_bytes(pki.server_cert.read_bytes())
    key.write_bytes(pki.server_key.read_bytes())
    with ControlPlane(TINY, port=0, tls=TlsFiles(cert, key)) as plane:
        with Client(localhost(plane), timeout=10, ca=pki.ca) as c:
            assert c.get_topology().topology.name == "tiny"
        fresh = Pki(tmp_path / "rotated", "rotated")  # a new CA and server pair, written over the served files
        key.write_bytes(fresh.server_key.read_bytes())
        cert.write_bytes(fresh.server_cert.read_bytes())
        with Client(localhost(plane), timeout=10, ca=fresh.ca) as c:  # a new connection sees the new pair
            assert c.get_topology().topology.name == "tiny"
        with Client(localhost(plane), timeout=3, ca=pki.ca) as old:
            assert rpc_error(old.get_topology).code() == grpc.StatusCode.UNAVAILABLE


# --- tokens and roles ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def guarded(tokens):
    with ControlPlane(TINY, port=0, tokens=TokenStore.load(tokens), hour=lambda: 14) as plane:
        yield plane


def every_call(c: Client) -> dict[str, object]:
    """One call of every method, by name; each returns something truthy on success."""
    def watch():
        stream = c.watch_topology(timeout=10)
        first = next(stream)
        stream.cancel()
        return first

    def place():
        d = c.place(sg()).decision
        c.release(list(d.reservation_ids))
        return d

    return {
        "Place": place,
        "PlaceBatch": lambda: c.place_batch([sg()], dry_run=True),
        "GetPlan": lambda: c.get_plan([types_pb2.DemandCell(region="manila", model="llm-70b", tokens_per_s=100)]),
        "Release": lambda: c.release([123456]).topology_version,
        "GetTopology": lambda: c.get_topology(),
        "WatchTopology": watch,
        "SetLinkStatus": lambda: c.set_link_status(["cable-b"], up=True),
        "ReloadTopology": lambda: c.reload_topology().result.ok,
    }


OPERATOR_ONLY = {"SetLinkStatus", "ReloadTopology"}


def test_without_a_known_token_every_call_is_unauthenticated(guarded):
    for token in (None, STRANGER_TOKEN, ""):
        with Client(guarded.target, timeout=5, token=token) as c:
            for name, call in every_call(c).items():
                e = rpc_error(call)
                assert e.code() == grpc.StatusCode.UNAUTHENTICATED, (token, name)
                assert e.details().startswith("authorization: ") and error_field(e) == "authorization"
    # A malformed header is no better than none.
    with Client(guarded.target, timeout=5) as c:
        e = rpc_error(c.placement.Place, placement_pb2.PlaceRequest(batch=sg()),
                      metadata=[("authorization", f"Basic {ROUTER_TOKEN}")], timeout=5)
        assert e.code() == grpc.StatusCode.UNAUTHENTICATED


def test_routers_place_and_read_but_may_not_change_state(guarded):
    with Client(guarded.target, timeout=10, token=ROUTER_TOKEN) as c:
        for name, call in every_call(c).items():
            if name in OPERATOR_ONLY:
                e = rpc_error(call)
                assert e.code() == grpc.StatusCode.PERMISSION_DENIED, name
                assert e.details() == (f"authorization: 'router-sg-1' (role router) may not call "
                                       f"/scheduler.v1.OperatorService/{name}; it needs the operate permission")
            else:
                assert call(), name
    assert not guarded.state.overrides  # the router's cut never happened


def test_operators_may_call_everything(guarded):
    with Client(guarded.target, timeout=10, token=OPERATOR_TOKEN) as c:
        for name, call in every_call(c).items():
            assert call(), name
        cut = c.set_link_status(["cable-a"], up=False)
        assert "cable-a" in cut.down_cables and [(o.id, o.up) for o in cut.overrides][-1] == ("cable-a", False)
        repaired = c.set_link_status(["cable-a"], up=True)
        assert "cable-a" not in repaired.down_cables


def test_a_router_releases_only_its_own_holds(guarded):
    with Client(guarded.target, timeout=10, token=ROUTER_TOKEN) as sg1, \
            Client(guarded.target, timeout=10, token=OTHER_ROUTER_TOKEN) as jkt1, \
            Client(guarded.target, timeout=10, token=OPERATOR_TOKEN) as ops:
        mine = list(sg1.place(sg()).decision.reservation_ids)
        theirs = list(jkt1.place(sg()).decision.reservation_ids)
        assert jkt1.release(mine).released == 0  # another router's holds are not its to free
        assert jkt1.release(theirs).released == len(theirs)
        assert sg1.release(mine[:1]).released == 1
        assert ops.release(mine).released == len(mine) - 1  # an operator may free any
        assert guarded.engine.ledger.snapshot() == {}


def test_health_is_open_and_reflection_needs_a_token(guarded):
    with Client(guarded.target, timeout=5) as anonymous:
        health = health_pb2_grpc.HealthStub(anonymous.channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as info:
            ProtoReflectionDescriptorDatabase(anonymous.channel).get_services()
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with Client(guarded.target, timeout=5, token=ROUTER_TOKEN) as c:
        assert PLACEMENT_SERVICE in set(ProtoReflectionDescriptorDatabase(c.channel).get_services())


def test_tokens_never_appear_in_logs_or_answers(guarded, caplog):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    caplog.set_level(logging.DEBUG)  # access lines too
    answers: list[str] = []
    try:
        for token in (STRANGER_TOKEN, ROUTER_TOKEN, OPERATOR_TOKEN):
            with Client(guarded.target, timeout=5, token=token) as c:
                for name, call in every_call(c).items():
                    try:
                        answers.append(str(call()))
                    except grpc.RpcError as e:
                        answers.append(f"{e.code()} {e.details()} {e.trailing_metadata()}")
        with Client(guarded.target, timeout=5) as c:  # a token in the wrong header shape
            e = rpc_error(c.topology.GetTopology, topology_pb2.GetTopologyRequest(), timeout=5,
                          metadata=[("authorization", f"Token {OPERATOR_TOKEN}")])
            answers.append(f"{e.details()} {e.trailing_metadata()}")
    finally:
        root.removeHandler(handler)
    text = stream.getvalue()
    records = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "unauthenticated call to /scheduler.v1.PlacementService/Place" in records  # failures are logged...
    assert "'router-sg-1' (role router) may not call" in " ".join(answers)
    assert [json.loads(line) for line in text.splitlines()]  # ...as JSON lines
    for secret in (STRANGER_TOKEN, ROUTER_TOKEN, OPERATOR_TOKEN):
        for where, haystack in (("json log", text), ("log records", records), ("answers", "\n".join(answers))):
            assert secret not in haystack, where
            assert hash_token(secret) not in haystack, where  # nor its digest


# --- token files -----------------------------------------------------------------------------------------------------
BAD_FILES = [
    ("plaintext", "tokens:\n  - {name: r, role: router, token: hunter2}\n", "tokens[0].token: unknown key (store the sha256"),
    ("short digest", "tokens:\n  - {name: r, role: router, sha256: abc123}\n", "tokens[0].sha256: must be 64 hex"),
    ("role", f"tokens:\n  - {{name: r, role: admin, sha256: {'a' * 64}}}\n", "tokens[0].role: must be one of"),
    ("twice", f"tokens:\n  - {{name: r, role: router, sha256: {'a' * 64}}}\n"
              f"  - {{name: s, role: operator, sha256: {'A' * 64}}}\n", "tokens[1].sha256: the same token as 'r'"),
    ("name", f"tokens:\n  - {{name: '', role: router, sha256: {'a' * 64}}}\n", "tokens[0].name: "),
    ("empty", "tokens: []\n", "tokens: expected a non-empty list"),
    ("yaml", "tokens: [\n", "not valid YAML"),
]


@pytest.mark.parametrize("text, message", [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_token_file_problems_name_the_entry_and_never_the_value(tmp_path, text, message):
    path = tmp_path / "tokens.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        TokenStore.load(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)
    assert "hunter2" not in str(info.value)


def test_new_token_helper_prints_an_entry_the_store_accepts(tmp_path, capsys):
    assert security_main(["new-token", "router-jkt-2", "router"]) == 0
    out, err = capsys.readouterr()
    token = err.strip().rsplit(" ", 1)[1]
    path = tmp_path / "tokens.yaml"
    path.write_text("tokens:\n" + out)
    assert token not in out and TokenStore.load(path).lookup(token).name == "router-jkt-2"
    (tmp_path / "token").write_text(token + "\n")
    assert read_token(tmp_path / "token") == token


# --- exposure --------------------------------------------------------------------------------------------------------
def test_loopback_addresses():
    assert all(map(is_loopback, ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "[::]", "10.0.0.7", "scheduler.internal", ""]))
    check_exposure("0.0.0.0", tls=True, tokens=True, insecure=False)
    check_exposure("0.0.0.0", tls=False, tokens=False, insecure=True)
    for tls, tok in ((False, False), (True, False), (False, True)):
        with pytest.raises(ConfigError, match="refusing to serve 0.0.0.0 without"):
            check_exposure("0.0.0.0", tls=tls, tokens=tok, insecure=False)


def test_a_non_loopback_address_needs_tls_and_tokens_or_insecure(tmp_path, pki, tokens):
    with pytest.raises(ConfigError, match=r"refusing to serve 0\.0\.0\.0 without TLS .* and tokens"):
        ControlPlane(TINY, host="0.0.0.0", port=0)
    with pytest.raises(ConfigError, match=r"without tokens \(--tokens\)"):
        ControlPlane(TINY, host="0.0.0.0", port=0, tls=TlsFiles(pki.server_cert, pki.server_key))
    with ControlPlane(TINY, host="0.0.0.0", port=0, insecure=True) as plane, \
            Client(f"127.0.0.1:{plane.port}", timeout=5) as c:
        assert c.get_topology().topology.name == "tiny"
    proc = subprocess.run([sys.executable, "-m", "scheduler", "serve", "--topology", str(TINY), "--host", "0.0.0.0",
                           "--port", "0"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: refusing to serve 0.0.0.0 without TLS (--tls-cert/--tls-key) and tokens")


def test_serve_and_place_with_tls_and_tokens_from_flags_and_config(tmp_path, pki, tokens, capsys):
    config = tmp_path / "serve.yaml"
    config.write_text(f"host: 0.0.0.0\nport: 0\ntls-cert: {pki.server_cert}\ntls_key: {pki.server_key}\n"
                      f"tokens: {tokens.name}\nlog_level: warning\n")
    (tmp_path / tokens.name).write_text(tokens.read_text())  # relative paths are relative to the config file
    proc = subprocess.Popen([sys.executable, "-m", "scheduler", "serve", "--config", str(config),
                             "--topology", str(TINY), "--tls-client-ca", str(pki.ca)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r" on 0\.0\.0\.0:(\d+)$", line.strip())
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        target = f"localhost:{m.group(1)}"
        (tmp_path / "router.token").write_text(ROUTER_TOKEN + "\n")
        common = ["--target", target, "--region", "singapore", "--model", "llm-70b", "--dry-run", "--ca",
                  str(pki.ca), "--cert", str(pki.client_cert), "--key", str(pki.client_key)]
        assert main(["place", *common, "--token-file", str(tmp_path / "router.token")]) == 0
        assert capsys.readouterr().out.startswith("PLACED  singapore -> llm-70b")
        assert main(["place", *common]) == 1  # no token
        assert capsys.readouterr().err.startswith("error: UNAUTHENTICATED: authorization: missing")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    bad = tmp_path / "bad.yaml"
    bad.write_text("tls_cert: 7\n")
    assert main(["serve", "--config", str(bad)]) == 2
    assert "tls_cert: expected str, got 7" in capsys.readouterr().err
