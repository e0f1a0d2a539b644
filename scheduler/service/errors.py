"""Status codes: engine outcomes and exceptions mapped onto gRPC codes, with the field at fault in the trailers.

Every failure reads `field: message` (e.g. `region: unknown region 'mars'`) and carries trailing metadata a program
can use without parsing the text: `scheduler-field`, `scheduler-topology-version`, and for an unplaced single batch
`scheduler-decision-bin`, the serialized Decision with every rejected site and why.

Errors stay small whatever the request: a message quotes at most a short prefix of any value it echoes
(`scheduler.engine.request.quote`), the API refuses over-long ids and names up front (INVALID_ARGUMENT naming the
field and the limit), and as a last line `abort` cuts the details and drops a decision that would not fit, so a
failure's metadata stays well under gRPC's default 8 KiB limit (over it, a client sees RESOURCE_EXHAUSTED instead
of the real error).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from scheduler.engine.core import Overloaded
from scheduler.engine.request import InvalidRequest, Reason

log = logging.getLogger("scheduler.service")

FIELD_KEY = "scheduler-field"
VERSION_KEY = "scheduler-topology-version"
DECISION_KEY = "scheduler-decision-bin"
NO_DEADLINE = 1e8  # grpc reports a huge time_remaining when the client set no deadline
# Error metadata budget, on the wire (gRPC clients refuse trailers over 8 KiB by default): the details as sent
# (grpc-message percent-encodes every byte outside printable ASCII: 3 bytes each), and the serialized decision
# (sent base64-encoded: 4 bytes per 3), together under 6.5 KiB with room for the field, version and request id.
MAX_DETAILS_WIRE_BYTES = 2048
MAX_DECISION_BYTES = 3 * 1024

# Which request field an unplaced reason is about, so FAILED_PRECONDITION messages name a field too.
REASON_FIELD = {
    Reason.NOT_SERVED: "model",
    Reason.SITE_DOWN: "model",
    Reason.UNREACHABLE: "region",
    Reason.DATA_CLASS: "data_class",
    Reason.TTFT: "ttft_ms",
    Reason.E2E: "e2e_ms",
    Reason.CAPACITY: "batch",
    Reason.CABLE: "batch",
    Reason.SOLVER_FAILED: "demand",
}


class ServiceError(Exception):
    """A failed call: the status code, the `field: message` text, and trailers."""

    def __init__(self, code: grpc.StatusCode, message: str, field: str = "", version: str = "",
                 decision: bytes | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.version = version
        self.decision = decision


def invalid(field: str, message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {message}", field)


def unplaced(reason: Reason, message: str, version: str, decision: bytes | None) -> ServiceError:
    """Capacity gone is RESOURCE_EXHAUSTED (retry later); anything else is FAILED_PRECONDITION (retrying the same
    request will not help: the SLO, data class or model rules every site out)."""
    code = (grpc.StatusCode.RESOURCE_EXHAUSTED if reason in (Reason.CAPACITY, Reason.CABLE)
            else grpc.StatusCode.FAILED_PRECONDITION)
    field = REASON_FIELD.get(reason, "batch")
    return ServiceError(code, f"{field}: {message}", field, version, decision)


def remaining(context: grpc.ServicerContext) -> float | None:
    """Seconds left before the client's deadline, or None when it set none."""
    left = context.time_remaining()
    return None if left is None or left > NO_DEADLINE else left


def check_deadline(context: grpc.ServicerContext, what: str) -> None:
    left = remaining(context)
    if left is not None and left <= 0:
        raise ServiceError(grpc.StatusCode.DEADLINE_EXCEEDED, f"deadline: exceeded {what}", "deadline")


def _wire_bytes(text: str) -> int:
    """Bytes `text` takes as grpc-message: printable ASCII as is (but %), everything else percent-encoded."""
    data = text.encode("utf-8", "replace")
    return len(data) + 2 * sum(1 for b in data if b < 0x20 or b > 0x7E or b == 0x25)


def bounded_details(message: str, limit: int = MAX_DETAILS_WIRE_BYTES) -> str:
    """`message` as is when it fits in `limit` wire bytes, else its longest prefix that does, marked as cut."""
    # 12: the most wire bytes one character takes (4 UTF-8 bytes, percent-encoded); at least 1 each
    if len(message) * 12 <= limit or (len(message) <= limit and _wire_bytes(message) <= limit):
        return message
    suffix = f"... (cut from {len(message)} characters)"
    budget = limit - len(suffix)
    low, high = 0, min(len(message), budget)
    while low < high:  # the longest prefix that fits
        mid = (low + high + 1) // 2
        if _wire_bytes(message[:mid]) <= budget:
            low = mid
        else:
            high = mid - 1
    return message[:low] + suffix


def abort(context: grpc.ServicerContext, e: ServiceError) -> None:
    trailers: list[tuple[str, str | bytes]] = []
    if e.field:
        trailers.append((FIELD_KEY, bounded_details(e.field, 256)))
    if e.version:
        trailers.append((VERSION_KEY, e.version))
    if e.decision is not None:
        if len(e.decision) <= MAX_DECISION_BYTES:
            trailers.append((DECISION_KEY, e.decision))
        else:  # callers trim decisions to fit (placement.trailer_decision); never send one that would not
            log.warning("dropped a %d-byte decision from the error trailers (limit %d)", len(e.decision),
                        MAX_DECISION_BYTES)
    context.set_trailing_metadata(trailers)
    context.abort(e.code, bounded_details(e.message))


F = TypeVar("F", bound=Callable[..., Any])


def translated(version: Callable[[Any], str]) -> Callable[[F], F]:
    """Wrap a unary servicer method: engine exceptions become status codes; anything unexpected is INTERNAL
    (logged with its traceback, never leaked to the client)."""

    def wrap(method: F) -> F:
        @functools.wraps(method)
        def call(self, request, context):
            try:
                return method(self, request, context)
            except ServiceError as e:
                failure = e
            except InvalidRequest as e:
                failure = invalid(e.field, e.message)
            except Overloaded as e:
                failure = ServiceError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"batches: {e}", "batches")
            except Exception:
                log.exception("%s failed", method.__name__)
                failure = ServiceError(grpc.StatusCode.INTERNAL, "internal error (see the server log)")
            if not failure.version:
                failure.version = version(self)
            abort(context, failure)

        return call  # type: ignore[return-value]

    return wrap
