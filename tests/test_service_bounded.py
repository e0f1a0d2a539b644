"""Bounded errors, against a real control plane on loopback: over-long ids and names are refused up front with
INVALID_ARGUMENT naming the field and the limit, errors quote at most a short prefix of any value they echo, and an
error's metadata stays well under gRPC's 8 KiB limit whatever the request (over it, the client would see
RESOURCE_EXHAUSTED, which means "retry later", instead of the real error)."""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import quote as percent

import grpc
import pytest

from scheduler.engine.request import MAX_ID_CHARS, MAX_NAME_CHARS, QUOTE_CHARS, quote
from scheduler.service import errors
from scheduler.service.client import Client, error_decision, error_field
from scheduler.service.placement import MAX_TRAILER_DECISION_BYTES, trailer_decision
from scheduler.service.server import ControlPlane
from scheduler.v1 import operator_pb2, placement_pb2, types_pb2

TINY = Path(__file__).resolve().parent.parent / "topology" / "tiny.yaml"
KIB = 1024
GRPC_METADATA_LIMIT = 8 * KIB
BUDGET = 6.5 * KIB  # what errors.py allows itself at most; real errors are far smaller
SIZES = [10 * KIB, 20 * KIB, KIB * KIB]
PRINTABLE = " !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~"  # sent as is in grpc-message (besides letters and digits)


def metadata_bytes(e: grpc.RpcError) -> int:
    """An error's trailing metadata as sent: every key and value (binary values base64, as on the wire), and the
    status details (grpc-message, percent-encoded outside printable ASCII)."""
    n = len("grpc-status") + 2 + len("grpc-message") + len(percent(e.details() or "", safe=PRINTABLE))
    for key, value in e.trailing_metadata() or ():
        n += len(key) + (len(base64.b64encode(value)) if isinstance(value, bytes) else len(value.encode()))
    return n


@pytest.fixture(scope="module")
def plane():
    with ControlPlane(TINY, port=0, hour=lambda: 14) as p:
        yield p


@pytest.fixture(scope="module")
def client(plane):
    with Client(plane.target, timeout=30) as c:
        c.wait_ready()
        yield c


def sg(**kw) -> types_pb2.Batch:
    args = dict(region="singapore", model="llm-70b", input_tokens=2000, output_tokens=500)
    args.update(kw)
    return types_pb2.Batch(**args)


def refused(call, *args, **kw) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, timeout=30, **kw)
    e = info.value
    assert metadata_bytes(e) < BUDGET, (e.code(), metadata_bytes(e))
    return e


LIMIT = {"id": MAX_ID_CHARS, "region": MAX_NAME_CHARS, "model": MAX_NAME_CHARS, "data_class": MAX_NAME_CHARS}


@pytest.mark.parametrize("size", SIZES, ids=["10KiB", "20KiB", "1MiB"])
@pytest.mark.parametrize("field", list(LIMIT))
def test_place_refuses_oversized_strings_with_small_errors(plane, client, field, size):
    # ttft_ms=1 can never be met: before the limits, a long id came back inside the unplaced decision's trailer.
    e = refused(client.placement.Place, placement_pb2.PlaceRequest(batch=sg(ttft_ms=1, **{field: "x" * size}),
                                                                   dry_run=True))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (e.code(), e.details()[:200])
    assert e.details() == f"{field}: at most {LIMIT[field]} characters, got {size}"
    assert error_field(e) == field and metadata_bytes(e) < KIB


def test_the_measured_case_a_20_kib_model_name_is_invalid_argument_every_time(client):
    codes = set()
    for _ in range(20):  # grpc refused such trailers at random past 8 KiB (3 of 20 at 10 KiB, all at 20 KiB)
        with pytest.raises(grpc.RpcError) as info:
            client.place(sg(model="m" * 20 * KIB), dry_run=True)
        codes.add(info.value.code())
        assert metadata_bytes(info.value) < KIB
    assert codes == {grpc.StatusCode.INVALID_ARGUMENT}


def test_place_batch_names_the_batch_and_the_limit(client):
    batches = [sg(id=f"b{i}") for i in range(5)]
    batches[3] = sg(id="i" * KIB * KIB)
    e = refused(client.placement.PlaceBatch, placement_pb2.PlaceBatchRequest(batches=batches, dry_run=True))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == f"batches[3].id: at most {MAX_ID_CHARS} characters, got {KIB * KIB}"
    assert error_field(e) == "batches[3].id"
    batches[3] = sg(region="r" * 100 * KIB)
    e = refused(client.placement.PlaceBatch, placement_pb2.PlaceBatchRequest(batches=batches, dry_run=True))
    assert e.details() == f"batches[3].region: at most {MAX_NAME_CHARS} characters, got {100 * KIB}"


def test_get_plan_limits_its_names(client):
    good = types_pb2.DemandCell(region="manila", model="llm-70b", tokens_per_s=10)
    long_model = types_pb2.DemandCell(region="manila", model="m" * 20 * KIB, tokens_per_s=10)
    e = refused(client.placement.GetPlan, placement_pb2.GetPlanRequest(demand=[good, long_model]))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                       f"demand[1].model: at most {MAX_NAME_CHARS} characters, got {20 * KIB}")
    e = refused(client.placement.GetPlan, placement_pb2.GetPlanRequest(demand=[good], policy="p" * KIB * KIB))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                       f"policy: at most {MAX_NAME_CHARS} characters, got {KIB * KIB}")
    e = refused(client.placement.GetPlan, placement_pb2.GetPlanRequest(demand=[good], policy="p" * 100))
    assert e.details() == (f"policy: unknown policy {quote('p' * 100)}; choose from optimal, cheapest-greedy, "
                           f"nearest")


def test_set_link_status_limits_its_ids(client):
    ids = ["cable-a", "c" * 60 * KIB]
    e = refused(client.operator.SetLinkStatus, operator_pb2.SetLinkStatusRequest(ids=ids, up=False))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                       f"ids[1]: at most {MAX_ID_CHARS} characters, got {60 * KIB}")
    assert error_field(e) == "ids[1]"


@pytest.mark.parametrize("field", ["region", "model", "data_class"])
def test_unknown_names_within_the_limit_are_quoted_by_a_short_prefix(client, field):
    value = "\u00e9" * MAX_NAME_CHARS  # within the limit, unknown, and 2 bytes a character (percent-encoded: 6)
    e = refused(client.place, sg(**{field: value}), dry_run=True)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == f"{field}: unknown {field.replace('_', ' ')} {quote(value)}"
    assert quote(value) == f"{value[:QUOTE_CHARS]!r}... ({MAX_NAME_CHARS} characters)"
    assert value not in e.details()
    e = refused(client.operator.SetLinkStatus, operator_pb2.SetLinkStatusRequest(ids=["k" * MAX_ID_CHARS]))
    assert e.details() == f"ids[0]: unknown cable or link {'k' * QUOTE_CHARS!r}... ({MAX_ID_CHARS} characters)"


def test_short_values_read_as_before(client):
    e = refused(client.place, sg(region="mars"))
    assert e.details() == "region: unknown region 'mars'"


def test_the_limits_are_generous_for_real_ids(client):
    long_id = "router-sg-1/" + "9" * (MAX_ID_CHARS - 12)
    d = client.place(sg(id=long_id), dry_run=True).decision
    assert d.placed and d.batch_id == long_id
    resp = client.place_batch([sg(id=long_id), sg(id="b2")], dry_run=True)
    assert [x.batch_id for x in resp.decisions] == [long_id, "b2"]


def test_an_unplaced_decision_with_the_longest_id_fits_the_trailer(client):
    long_id = "\U0001F600" * MAX_ID_CHARS  # 4 bytes a character: the largest id the API accepts
    e = refused(client.place, sg(id=long_id, ttft_ms=1), dry_run=True)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    d = error_decision(e)
    assert d is not None and d.batch_id == long_id and d.rejections
    assert metadata_bytes(e) < 3 * KIB


# --- the last line of defence, without a server ------------------------------------------------------------------
def test_quote_bounds_any_value():
    assert quote("mars") == "'mars'" and quote(42) == "42"
    for n in (QUOTE_CHARS + 1, 10 * KIB, KIB * KIB):
        text = quote("\x00" * n)  # the worst case for repr: 4 characters each
        assert text.endswith(f"... ({n} characters)") and len(text) < 5 * QUOTE_CHARS
    assert len(quote(list(range(10_000)))) < 2 * QUOTE_CHARS


def test_details_and_decisions_are_cut_to_the_budget():
    for message in ("x" * KIB * KIB, "\U0001F600" * 100 * KIB, "%" * 10 * KIB):
        cut = errors.bounded_details(message)
        assert errors._wire_bytes(cut) <= errors.MAX_DETAILS_WIRE_BYTES and cut.endswith("characters)")
        assert message.startswith(cut[:10])
    assert errors.bounded_details("region: unknown region 'mars'") == "region: unknown region 'mars'"
    huge = types_pb2.Decision(batch_id="i" * KIB * KIB, message="m" * 100 * KIB, rejections=[
        types_pb2.Rejection(site=f"site-{i}", reason=types_pb2.REASON_TTFT, detail="over") for i in range(100)])
    assert len(trailer_decision(huge)) <= MAX_TRAILER_DECISION_BYTES
    # the decision (base64), the details, and 512 bytes for the field, version, request id and status
    assert 4 * MAX_TRAILER_DECISION_BYTES / 3 + errors.MAX_DETAILS_WIRE_BYTES + 512 <= BUDGET < GRPC_METADATA_LIMIT


class _Context:
    def __init__(self):
        self.trailers, self.code, self.details = (), None, None

    def set_trailing_metadata(self, md):
        self.trailers = tuple(md)

    def abort(self, code, details):
        self.code, self.details = code, details
        raise grpc.RpcError(details)


def test_abort_never_sends_an_oversized_error():
    ctx = _Context()
    with pytest.raises(grpc.RpcError):
        errors.abort(ctx, errors.ServiceError(grpc.StatusCode.FAILED_PRECONDITION, "batch: " + "x" * KIB * KIB,
                                              "batch", "v1", b"d" * 100 * KIB))
    assert ctx.code == grpc.StatusCode.FAILED_PRECONDITION and len(ctx.details) <= errors.MAX_DETAILS_WIRE_BYTES
    assert dict(ctx.trailers) == {errors.FIELD_KEY: "batch", errors.VERSION_KEY: "v1"}  # the decision dropped
