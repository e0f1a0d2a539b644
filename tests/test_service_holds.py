"""Bounded holds and fair use: a maximum hold duration, per-token quotas from the tokens file, and the operator's
ListHolds / ReleaseHolds (RPC and `scheduler holds`)."""

from __future__ import annotations

import grpc
import pytest
from conftest import TINY, token_store

from scheduler.cli import main
from scheduler.service.client import Client, error_field
from scheduler.service.server import ControlPlane
from scheduler.service.security import ConfigError, TokenStore
from scheduler.v1 import types_pb2

BATCH = types_pb2.Batch(region="singapore", model="llm-70b", input_tokens=100, output_tokens=2000, requests=10)


@pytest.fixture()
def plane(tmp_path):
    tokens = token_store(tmp_path / "tokens.yaml", ops=("operator", "ops-secret"), sg=("router", "sg-secret"),
                         small=("router", "small-secret"))
    # the quota goes into the file as an operator writes it
    text = (tmp_path / "tokens.yaml").read_text().replace("name: small, role: router,", "name: small, role: router, quota: 3,")
    (tmp_path / "tokens.yaml").write_text(text)
    tokens = TokenStore.load(tmp_path / "tokens.yaml")
    p = ControlPlane(TINY, port=0, hour=lambda: 14, tokens=tokens, max_hold_s=600).start()
    yield p
    p.stop(0)


def client(plane, secret: str) -> Client:
    return Client(plane.target, timeout=10, token=secret)


def test_a_batch_holding_past_the_maximum_is_refused_naming_the_field(plane):
    long = types_pb2.Batch(region="singapore", model="llm-70b", input_tokens=10, output_tokens=10_000_000,
                           requests=1)
    with client(plane, "sg-secret") as c:
        with pytest.raises(grpc.RpcError) as e:
            c.place(long)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and error_field(e.value) == "batch.output_tokens"
        assert "--max-hold" in e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            c.place_batch([BATCH, long])
        assert error_field(e.value) == "batches[1].output_tokens"
        assert c.place(long, dry_run=True).decision.placed  # asking where it would go holds nothing
    assert plane.engine.ledger.snapshot() == {}


def test_quota_caps_a_token_and_leaves_the_others_alone(plane):
    with client(plane, "small-secret") as small, client(plane, "sg-secret") as sg:
        taken = 0.0
        with pytest.raises(grpc.RpcError) as e:
            for _ in range(100):
                taken += small.place(BATCH).decision.accelerators
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and error_field(e.value) == "quota"
        assert "'small'" in e.value.details() and 0 < taken <= 3 + 1e-9
        assert plane.engine.ledger.held_by("small") == pytest.approx(taken)
        with pytest.raises(grpc.RpcError) as e:
            small.place_batch([BATCH] * 10)
        assert error_field(e.value) == "quota"
        assert sg.place(BATCH).decision.placed  # another token is not held back


def test_quota_in_the_tokens_file_is_checked(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("tokens:\n  - {name: a, role: router, sha256: " + "ab" * 32 + ", quota: -1}\n")
    with pytest.raises(ConfigError, match=r"tokens\[0\]\.quota"):
        TokenStore.load(path)


def test_operator_lists_and_releases_holds_by_token_and_pool(plane):
    with client(plane, "small-secret") as small, client(plane, "sg-secret") as sg, \
            client(plane, "ops-secret") as ops:
        a = small.place(BATCH).decision
        b = [sg.place(BATCH).decision for _ in range(3)]
        listed = ops.list_holds()
        assert listed.total == sum(len(d.reservation_ids) for d in [a, *b])
        assert listed.accelerators_by_owner["small"] == pytest.approx(a.accelerators)
        assert listed.accelerators_by_owner["sg"] == pytest.approx(sum(d.accelerators for d in b))
        mine = ops.list_holds(owner="sg", pool=b[0].pool)
        assert {h.owner for h in mine.holds} == {"sg"} and {h.pool for h in mine.holds} == {b[0].pool}
        assert ops.list_holds(limit=1).total == listed.total and len(ops.list_holds(limit=1).holds) == 1
        with pytest.raises(grpc.RpcError) as e:
            sg.list_holds()  # a router may not
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as e:
            ops.release_holds()
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and error_field(e.value) == "ids"
        assert ops.release_holds(owner="sg").released == sum(len(d.reservation_ids) for d in b)
        assert plane.engine.ledger.held_by("sg") == 0 and plane.engine.ledger.held_by("small") > 0
        assert ops.release_holds(ids=list(a.reservation_ids)).released == len(a.reservation_ids)
        assert plane.engine.ledger.snapshot() == {}


def test_a_router_releases_only_its_own_holds(plane):
    with client(plane, "small-secret") as small, client(plane, "sg-secret") as sg:
        theirs = sg.place(BATCH).decision.reservation_ids
        assert small.release(list(theirs)).released == 0
        assert sg.release(list(theirs)).released == len(theirs)


def test_holds_cli_lists_and_releases(plane, tmp_path, capsys):
    token = tmp_path / "ops.token"
    token.write_text("ops-secret\n")
    with client(plane, "sg-secret") as sg:
        d = sg.place(BATCH).decision
    assert main(["holds", "list", "--target", plane.target, "--token-file", str(token)]) == 0
    out = capsys.readouterr().out
    assert str(d.reservation_ids[0]) in out and "sg" in out
    assert main(["holds", "release", "--owner", "sg", "--target", plane.target, "--token-file", str(token)]) == 0
    assert f"released {len(d.reservation_ids)} holds" in capsys.readouterr().out
    assert plane.engine.ledger.snapshot() == {}


def test_serve_refuses_cluster_flags_that_cannot_work(capsys):
    assert main(["serve", "--cluster", "http://127.0.0.1:2379"]) == 2
    assert "--replica" in capsys.readouterr().err
    assert main(["serve", "--cluster", "https://x:2379", "--replica", "a"]) == 2
    assert "--cluster" in capsys.readouterr().err
    assert main(["serve", "--max-hold", "0"]) == 2
    assert "--max-hold" in capsys.readouterr().err
