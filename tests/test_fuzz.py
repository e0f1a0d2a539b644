"""Fuzzing (hypothesis, derandomized so CI runs the same examples every time):

- every RPC with random and malformed messages: random field values (NaN, inf, negative, huge, unicode), random
  authorization headers, and raw random bytes through a generic `channel.unary_unary` with identity serializers.
  The server never falls over and answers only with defined codes; INTERNAL comes only from grpc itself, for bytes
  that do not decode as the request message ("Exception deserializing request!"), before any of our code runs.
  Every error's metadata (trailers and details, as sent) stays under gRPC's 8 KiB limit;
- every string field of every RPC with oversized values (10 KiB, 100 KiB, 1 MiB): always INVALID_ARGUMENT naming
  the field, never RESOURCE_EXHAUSTED (what a client sees when an error's metadata overflows), with small metadata;
- the topology loader with random mutations of the default YAML (lines deleted, duplicated, swapped, re-indented,
  values changed in number and type): it raises LoadError and nothing else, every problem on a line of the file;
- hot reload with such mutations: the served version is always the old one or that of a file that validates.
"""

from __future__ import annotations

import base64
import logging
import math
import string
from pathlib import Path
from urllib.parse import quote as percent

import grpc
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings, strategies as st

from scheduler.engine.request import MAX_ID_CHARS, MAX_NAME_CHARS
from scheduler.model.loader import LoadError, load_topology
from scheduler.paths import DEFAULT_TOPOLOGY
from scheduler.service.client import Client, error_version
from scheduler.service.server import ControlPlane
from scheduler.v1 import operator_pb2, placement_pb2, topology_pb2, types_pb2
from conftest import token_store

TINY = Path(__file__).resolve().parent.parent / "topology" / "tiny.yaml"
ROUTER, OPERATOR = "fuzz-router-token", "fuzz-operator-token"
DEFINED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
           grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAUTHENTICATED,
           grpc.StatusCode.PERMISSION_DENIED}
UNDECODABLE = "Exception deserializing request!"  # grpc's own answer to bytes that are not the request message
FUZZ = settings(derandomize=True, deadline=None, database=None, max_examples=60,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# --- value strategies ----------------------------------------------------------------------------------------------
INT64 = st.one_of(st.integers(-2**63, 2**63 - 1), st.sampled_from([0, 1, -1, 2**31, 2**53 + 1, 2**63 - 1, -2**63]))
INT32 = st.one_of(st.integers(-2**31, 2**31 - 1), st.integers(-2, 30))
UINT32 = st.one_of(st.integers(0, 2**32 - 1), st.integers(0, 3000))
UINT64 = st.integers(0, 2**64 - 1)
HOURS = st.integers(0, 23)
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-308, 1e308, -1.0, 5.0, 1e4]))
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)  # proto strings are UTF-8
REGIONS = st.one_of(st.sampled_from(["singapore", "manila", "", "SINGAPORE", "mars"]), TEXT)
MODELS = st.one_of(st.sampled_from(["llm-70b", "", "llm-8b"]), TEXT)
CLASSES = st.one_of(st.sampled_from(["", "public", "offshore-processing", "secret"]), TEXT)
LINKS = st.one_of(st.sampled_from(["cable-a", "cable-b", "cable-a#0", "cable-b#1", "guangzhou~hongkong",
                                   "hongkong~guangzhou", "", "cable-c"]), TEXT)
HEADER = st.text(alphabet=string.ascii_letters + string.digits + " -._~+/=", max_size=60)
AUTH = st.one_of(st.sampled_from([f"Bearer {ROUTER}", f"Bearer {OPERATOR}"]),
                 st.one_of(st.just(None), HEADER, HEADER.map(lambda t: f"Bearer {t}")))


def maybe(strategy):
    return st.one_of(st.none(), strategy)


PLAUSIBLE = st.builds(types_pb2.Batch, id=TEXT, region=st.sampled_from(["singapore", "manila"]),
                      model=st.just("llm-70b"), input_tokens=st.integers(1, 5000), output_tokens=st.integers(1, 1000),
                      requests=st.integers(0, 5), ttft_ms=maybe(st.floats(100, 1e5)), data_class=st.just(""))


@st.composite
def batches(draw) -> types_pb2.Batch:
    if draw(st.booleans()):
        return draw(PLAUSIBLE)  # half the time something the engine places, so it gets fuzzed too
    kw = dict(id=draw(TEXT), region=draw(REGIONS), model=draw(MODELS), input_tokens=draw(INT64),
              output_tokens=draw(INT64), requests=draw(INT64), data_class=draw(CLASSES), priority=draw(INT32),
              ttft_ms=draw(maybe(FLOATS)), e2e_ms=draw(maybe(FLOATS)))
    if draw(st.booleans()):  # often a sane shape, so the engine (not only validation) gets fuzzed
        kw.update(input_tokens=draw(st.integers(0, 20_000)), output_tokens=draw(st.integers(0, 5000)),
                  requests=draw(st.integers(0, 50)))
    return types_pb2.Batch(**kw)


@st.composite
def cells(draw) -> types_pb2.DemandCell:
    if draw(st.booleans()):
        return types_pb2.DemandCell(region=draw(st.sampled_from(["singapore", "manila"])), model="llm-70b",
                                    tokens_per_s=draw(st.floats(0, 1e6)))
    return types_pb2.DemandCell(region=draw(REGIONS), model=draw(MODELS), tokens_per_s=draw(FLOATS),
                                data_class=draw(CLASSES), input_tokens=draw(maybe(INT64)),
                                output_tokens=draw(maybe(INT64)), ttft_ms=draw(maybe(FLOATS)),
                                e2e_ms=draw(maybe(FLOATS)))


REQUESTS = {
    "Place": st.builds(placement_pb2.PlaceRequest, batch=maybe(batches()), hour=maybe(st.one_of(INT32, HOURS)),
                       dry_run=st.booleans()),
    "PlaceBatch": st.builds(placement_pb2.PlaceBatchRequest, batches=st.lists(batches(), max_size=6),
                            hour=maybe(st.one_of(INT32, HOURS)), dry_run=st.booleans(), time_limit_ms=UINT32),
    "GetPlan": st.builds(placement_pb2.GetPlanRequest, demand=st.lists(cells(), max_size=4),
                         hour=maybe(st.one_of(INT32, HOURS)),
                         policy=st.one_of(st.sampled_from(["", "optimal", "nearest", "cheapest-greedy"]), TEXT),
                         use_ledger=st.booleans()),
    "Release": st.builds(placement_pb2.ReleaseRequest, reservation_ids=st.lists(UINT64, max_size=20)),
    "GetTopology": st.just(topology_pb2.GetTopologyRequest()),
    "WatchTopology": st.just(topology_pb2.WatchTopologyRequest()),
    "SetLinkStatus": st.builds(operator_pb2.SetLinkStatusRequest, up=st.booleans(), ids=st.one_of(
        st.lists(st.sampled_from(["cable-a", "cable-b", "cable-a#1", "shantou~guangzhou"]), min_size=1, max_size=3),
        st.lists(LINKS, max_size=4))),
    "ReloadTopology": st.just(operator_pb2.ReloadTopologyRequest()),
}
SERVICE = {"Place": "PlacementService", "PlaceBatch": "PlacementService", "GetPlan": "PlacementService",
           "Release": "PlacementService", "GetTopology": "TopologyService", "WatchTopology": "TopologyService",
           "SetLinkStatus": "OperatorService", "ReloadTopology": "OperatorService"}
STREAMING = {"WatchTopology"}


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    tokens = token_store(root / "tokens.yaml", r=("router", ROUTER), o=("operator", OPERATOR))
    topo = root / "tiny.yaml"
    topo.write_text(TINY.read_text())
    with ControlPlane(topo, port=0, hour=lambda: 14, tokens=tokens, default_deadline_s=5.0,
                      workers=8) as p:
        yield p


@pytest.fixture(scope="module")
def channel(plane):
    ch = grpc.insecure_channel(plane.target)
    yield ch
    ch.close()


@pytest.fixture(autouse=True)
def no_surprises(caplog):
    """No servicer may hit an unexpected exception (the INTERNAL path logs one at ERROR)."""
    caplog.set_level(logging.ERROR, logger="scheduler")
    yield
    surprises = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not surprises, [r.getMessage() for r in surprises]


METADATA_LIMIT = 8 * 1024  # gRPC's default limit on received metadata; past it the client sees RESOURCE_EXHAUSTED
PRINTABLE = " !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~"  # sent as is in grpc-message (besides letters and digits)


def metadata_bytes(e: grpc.RpcError) -> int:
    """An error's trailing metadata as sent: the sum of key and value lengths of every trailer (binary values
    base64-encoded, as on the wire) and of the status (grpc-message percent-encodes all but printable ASCII)."""
    n = len("grpc-status") + 2 + len("grpc-message") + len(percent(e.details() or "", safe=PRINTABLE))
    for key, value in e.trailing_metadata() or ():
        n += len(key) + (len(base64.b64encode(value)) if isinstance(value, bytes) else len(value.encode()))
    return n


def call(channel: grpc.Channel, method: str, payload: bytes, auth: str | None,
         extra: tuple = ()) -> tuple[grpc.StatusCode, str]:
    """Send serialized bytes as-is (identity serializers); the status code and details that came back. Every error
    must come with metadata under gRPC's limit."""
    code, details, _ = call_full(channel, method, payload, auth, extra)
    return code, details


def call_full(channel: grpc.Channel, method: str, payload: bytes, auth: str | None,
              extra: tuple = ()) -> tuple[grpc.StatusCode, str, tuple]:
    """`call`, with the trailing metadata of an error."""
    path = f"/scheduler.v1.{SERVICE[method]}/{method}"
    md = [("authorization", auth)] if auth is not None else []
    md += list(extra)
    try:
        if method in STREAMING:
            stream = channel.unary_stream(path)(payload, metadata=md, timeout=10)
            next(stream)
            stream.cancel()
            return grpc.StatusCode.OK, "", ()
        channel.unary_unary(path)(payload, metadata=md, timeout=10)
        return grpc.StatusCode.OK, "", ()
    except grpc.RpcError as e:
        size = metadata_bytes(e)
        assert size < METADATA_LIMIT, (method, e.code(), size, (e.details() or "")[:200])
        return e.code(), e.details() or "", tuple(e.trailing_metadata() or ())


REQUEST_CLASS = {"Place": placement_pb2.PlaceRequest, "PlaceBatch": placement_pb2.PlaceBatchRequest,
                 "GetPlan": placement_pb2.GetPlanRequest, "Release": placement_pb2.ReleaseRequest,
                 "GetTopology": topology_pb2.GetTopologyRequest, "WatchTopology": topology_pb2.WatchTopologyRequest,
                 "SetLinkStatus": operator_pb2.SetLinkStatusRequest,
                 "ReloadTopology": operator_pb2.ReloadTopologyRequest}


def still_serving(plane: ControlPlane) -> None:
    with Client(plane.target, timeout=10, token=OPERATOR) as c:
        c.set_link_status(["cable-a", "cable-b"], up=True)  # undo whatever the fuzzer cut
        assert c.place(types_pb2.Batch(region="singapore", model="llm-70b", input_tokens=100, output_tokens=10),
                       dry_run=True).decision.placed


@pytest.mark.parametrize("method", list(REQUESTS))
def test_every_rpc_answers_random_messages_with_defined_codes(plane, channel, method):
    seen: set[grpc.StatusCode] = set()

    @FUZZ
    @given(request=REQUESTS[method], auth=AUTH)
    def fuzz(request, auth):
        code, details = call(channel, method, request.SerializeToString(), auth)
        assert code in DEFINED, (code, details, request, auth)
        seen.add(code)

    fuzz()
    assert grpc.StatusCode.OK in seen and grpc.StatusCode.UNAUTHENTICATED in seen
    still_serving(plane)


@pytest.mark.parametrize("method", list(REQUESTS))
def test_raw_bytes_are_refused_by_grpc_or_answered_with_defined_codes(plane, channel, method):
    undecodable = 0

    @settings(FUZZ, max_examples=40)
    @given(payload=st.one_of(st.binary(max_size=300), REQUESTS[method].map(lambda m: m.SerializeToString())
                             .flatmap(lambda b: st.integers(0, max(len(b) - 1, 0)).map(lambda n: b[:n]))),
           auth=st.sampled_from([f"Bearer {OPERATOR}", f"Bearer {ROUTER}", None]))
    def fuzz(payload, auth):
        nonlocal undecodable
        try:
            REQUEST_CLASS[method].FromString(payload)
            decodes = True
        except DecodeError:
            decodes = False
        code, details = call(channel, method, payload, auth)
        if decodes:
            assert code in DEFINED, (code, details, payload)
        else:
            undecodable += 1
            assert (code, details) == (grpc.StatusCode.INTERNAL, UNDECODABLE), (code, details, payload)

    fuzz()
    assert undecodable > 0  # the fuzzer did send garbage
    still_serving(plane)


# --- oversized strings ---------------------------------------------------------------------------------------------
KIB = 1024
# 1, 2 and 4 UTF-8 bytes a character, and a control character (repr: 4 characters; on the wire: 3 bytes).
BIG = st.tuples(st.sampled_from([10 * KIB, 100 * KIB, KIB * KIB]),
                st.sampled_from(["x", "\u00e9", "\U0001F600", "\x00"])).map(lambda t: t[1] * t[0])
BATCH_STRINGS = ("id", "region", "model", "data_class")
LIMIT = {"id": MAX_ID_CHARS, "region": MAX_NAME_CHARS, "model": MAX_NAME_CHARS, "data_class": MAX_NAME_CHARS,
         "policy": MAX_NAME_CHARS, "ids": MAX_ID_CHARS}
CELL_STRINGS = ("region", "model", "data_class")


@st.composite
def with_oversized(draw, messages, fields):
    """1..4 messages (random or plausible), one or two of them with an oversized value in one of `fields`."""
    out = draw(st.lists(messages, min_size=1, max_size=4))
    marked = sorted(draw(st.sets(st.integers(0, len(out) - 1), min_size=1, max_size=2)))
    for i in marked:
        setattr(out[i], draw(st.sampled_from(fields)), draw(BIG))
    return out


@st.composite
def oversized_requests(draw, method):
    """A request of `method` with an oversized string somewhere, and what the field the error names starts with
    (an earlier batch or cell may be invalid for another reason: the error names the first one), or the exact
    details where only the oversized value can be at fault."""
    if method == "Place":
        batch = draw(st.one_of(PLAUSIBLE, batches()))
        name = draw(st.sampled_from(BATCH_STRINGS))
        value = draw(BIG)
        setattr(batch, name, value)
        return (placement_pb2.PlaceRequest(batch=batch, hour=draw(maybe(HOURS)), dry_run=draw(st.booleans())),
                f"{name}: at most {LIMIT[name]} characters, got {len(value)}")
    if method == "PlaceBatch":
        items = draw(with_oversized(st.one_of(PLAUSIBLE, batches()), BATCH_STRINGS))
        return placement_pb2.PlaceBatchRequest(batches=items, hour=draw(maybe(HOURS)), dry_run=draw(st.booleans()),
                                               time_limit_ms=draw(st.integers(0, 2000))), "batches["
    if method == "GetPlan":
        if draw(st.booleans()):
            demand = draw(st.lists(cells(), min_size=1, max_size=3))
            policy = draw(BIG)
            return (placement_pb2.GetPlanRequest(demand=demand, policy=policy),
                    f"policy: at most {MAX_NAME_CHARS} characters, got {len(policy)}")
        items = draw(with_oversized(cells(), CELL_STRINGS))
        return placement_pb2.GetPlanRequest(demand=items, policy=draw(st.sampled_from(["", "optimal", "nearest"])),
                                            hour=draw(maybe(HOURS))), "demand["
    assert method == "SetLinkStatus"
    ids = draw(st.lists(LINKS, min_size=1, max_size=4))
    at = draw(st.integers(0, len(ids) - 1))
    ids[at] = draw(BIG)
    return (operator_pb2.SetLinkStatusRequest(ids=ids, up=draw(st.booleans())),
            f"ids[{at}]: at most {MAX_ID_CHARS} characters, got {len(ids[at])}")


@pytest.mark.parametrize("method", ["Place", "PlaceBatch", "GetPlan", "SetLinkStatus"])
def test_oversized_strings_are_invalid_argument_with_small_metadata(plane, channel, method):
    sizes: list[int] = []

    @settings(FUZZ, max_examples=12)
    @given(case=oversized_requests(method), request_id=st.sampled_from(["", "r" * 200, "r" * 4 * KIB]))
    def fuzz(case, request_id):
        request, expected = case
        extra = (("x-request-id", request_id),) if request_id else ()
        code, details, trailers = call_full(channel, method, request.SerializeToString(), f"Bearer {OPERATOR}",
                                            extra)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details[:300])
        field = dict(trailers).get("scheduler-field", "")
        assert details.startswith(f"{field}: "), (field, details[:300])
        if expected.endswith("["):
            assert field.startswith(expected), (field, details[:300])
        else:
            assert details == expected, details[:300]
        assert len(details) < 1024 and len(dict(trailers).get("x-request-id", "")) <= 128
        sizes.append(sum(len(k) + len(v) for k, v in trailers) + len(details))

    fuzz()
    assert sizes and max(sizes) < 1024  # far under the 8 KiB limit, whatever the input size
    still_serving(plane)


# --- the topology loader -------------------------------------------------------------------------------------------
BASE = DEFAULT_TOPOLOGY.read_text().splitlines()
NEW_VALUES = st.sampled_from(["-1", "0", "1e400", "-1e400", ".nan", ".inf", "-.inf", "nan", "abc", "[]", "{}",
                              "null", "true", "''", "99999999999999999999999", "1.5", "-0", "[1, 2]", "{a: 1}",
                              "&anchor x", "*nothing", "!!binary aGk=", "'unclosed", "\"x\\u0000y\"", "2024-01-01",
                              "0x10", "~", "|", ">", "\t", "é中文", "- item"])


@st.composite
def mutated(draw, lines: list[str] = BASE) -> list[str]:
    out = list(lines)
    for _ in range(draw(st.integers(1, 3))):
        if not out:
            break
        i = draw(st.integers(0, len(out) - 1))
        kind = draw(st.sampled_from(["delete", "duplicate", "swap", "value", "number", "indent", "insert",
                                     "truncate"]))
        line = out[i]
        if kind == "delete":
            del out[i]
        elif kind == "duplicate":
            out.insert(i, line)
        elif kind == "swap":
            j = draw(st.integers(0, len(out) - 1))
            out[i], out[j] = out[j], line
        elif kind == "value" and ":" in line:
            key, _, _ = line.partition(":")
            out[i] = f"{key}: {draw(st.one_of(NEW_VALUES, TEXT.filter(lambda t: chr(10) not in t and chr(13) not in t)))}"
        elif kind == "number":
            digits = [k for k, ch in enumerate(line) if ch.isdigit()]
            if digits:
                k = draw(st.sampled_from(digits))
                out[i] = line[:k] + draw(st.sampled_from(["-", "9" * 30, ".", "e9", "x", "", "0", "-1"])) + line[k + 1:]
        elif kind == "indent":
            out[i] = " " * draw(st.integers(0, 9)) + line.lstrip()
        elif kind == "insert":
            out.insert(i, draw(st.sampled_from(["", "  ", "- x", "extra: 1", "  unknown_key: 3", "---", "...",
                                                "sites:", "  - id: ghost", "#", "[", "{"])))
        elif kind == "truncate":
            out = out[:i]
    return out


def test_the_loader_raises_only_load_error_with_lines_inside_the_file(tmp_path):
    path = tmp_path / "china-sea.yaml"
    outcomes = {"loaded": 0, "refused": 0}

    @settings(FUZZ, max_examples=150)
    @given(lines=mutated())
    def fuzz(lines):
        text = "\n".join(lines) + "\n"
        path.write_text(text)
        try:
            load_topology(path)
            outcomes["loaded"] += 1
        except LoadError as e:
            outcomes["refused"] += 1
            assert e.problems
            n = max(1, len(text.splitlines()))
            for p in e.problems:
                assert p.file == str(path) and 1 <= p.line <= n, (str(p), n)
                assert str(p).startswith(f"{path}:{p.line}: ")

    fuzz()
    assert outcomes["loaded"] > 0 and outcomes["refused"] > 0


def test_hot_reload_never_serves_an_invalid_file(tmp_path):
    path = tmp_path / "china-sea.yaml"
    path.write_text(DEFAULT_TOPOLOGY.read_text())
    with ControlPlane(path, port=0, hour=lambda: 14, poll_interval_s=3600) as plane, \
            Client(plane.target, timeout=30) as c:
        versions = {c.get_topology().topology_version}
        kinds = set()

        @settings(FUZZ, max_examples=25)
        @given(lines=mutated())
        def fuzz(lines):
            before = c.get_topology().topology_version
            path.write_text("\n".join(lines) + "\n")
            result = c.reload_topology().result
            served = c.get_topology().topology_version
            try:
                valid = load_topology(path).version
            except LoadError:
                valid = None
            assert served in (before, valid), (served, before, valid)
            if result.ok:
                assert valid is not None and served == valid == result.version
                kinds.add("applied")
            else:
                assert served == before and result.errors and all(e.line >= 1 for e in result.errors)
                kinds.add("refused")
            versions.add(served)
            try:  # whatever is served answers consistently with its version (the mutation may drop singapore)
                version = c.place(types_pb2.Batch(region="singapore", model="llm-70b", input_tokens=1000,
                                                  output_tokens=100, ttft_ms=60_000), dry_run=True).topology_version
            except grpc.RpcError as e:
                assert e.code() in DEFINED, (e.code(), e.details())
                version = error_version(e)
            assert version == served
            path.write_text(DEFAULT_TOPOLOGY.read_text())  # back to the good file for the next example
            assert c.reload_topology().result.ok

        fuzz()
        assert kinds == {"applied", "refused"}
