"""The server interceptor every call passes through before a servicer sees it, in this order:

1. a request id: the caller's `x-request-id` (if it is a sane token) or a new one; it is stamped on every log line
   written during the call and returned in the trailing metadata;
2. authentication and authorization: `authorization: Bearer <token>` looked up by SHA-256 in the token store;
   UNAUTHENTICATED when missing or unknown, PERMISSION_DENIED when the token's role lacks the method's permission
   (the token itself is never logged, echoed or kept);
3. limits: at most `max_concurrent` unary calls at work at once, the rest fail fast with RESOURCE_EXHAUSTED instead
   of queueing behind them; a default deadline for calls whose client set none;
4. metrics and an access log line (DEBUG) when the call ends.

grpc.health.v1 is open to anyone and never limited, so load balancers and probes keep working under load; the
OperatorService (an operator's rare calls: cutting a cable, listing or freeing holds) is never limited either, so an
operator gets through a server that is full of placements.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import grpc

from scheduler.service import logs
from scheduler.service.errors import FIELD_KEY, NO_DEADLINE
from scheduler.service.metrics import Metrics
from scheduler.service.security import OPERATE, PLACE, READ, Principal, TokenStore, bearer

log = logging.getLogger("scheduler.access")
audit = logging.getLogger("scheduler.auth")

REQUEST_ID_KEY = "x-request-id"
_SANE_ID = re.compile(r"^[A-Za-z0-9._:/-]{1,128}$")
HEALTH_PREFIX = "/grpc.health.v1.Health/"

# Permission per service (by full name); anything else served needs an authenticated caller of any role.
SERVICE_PERMISSION = {
    "scheduler.v1.PlacementService": PLACE,
    "scheduler.v1.TopologyService": READ,
    "scheduler.v1.OperatorService": OPERATE,
    "grpc.reflection.v1alpha.ServerReflection": READ,
    "grpc.reflection.v1.ServerReflection": READ,
}


def permission_of(method: str) -> str | None:
    """`/pkg.Service/Method` -> the permission it needs; None for the open health service."""
    if method.startswith(HEALTH_PREFIX):
        return None
    service = method[1:].split("/", 1)[0]
    return SERVICE_PERMISSION.get(service, READ)


# Made-up request ids: 8 random hex digits per process, then a counter (16 hex digits in all, like a uuid4 prefix
# but without a urandom call and a UUID object per call). Unique within a process; across processes as unique as
# the random prefix.
_ID_PREFIX = os.urandom(4).hex()
_ID_COUNTER = itertools.count(int.from_bytes(os.urandom(3), "big"))


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFF:08x}"


def request_id_of(metadata) -> str:
    for key, value in metadata or ():
        if key == REQUEST_ID_KEY and isinstance(value, str) and _SANE_ID.match(value):
            return value
    return new_request_id()


class CallContext:
    """The servicer context a handler sees: the real one, plus the request id in every trailer set, and the
    server's default deadline when the client set none (`time_remaining` reports the sooner of the two)."""

    __slots__ = ("_ctx", "request_id", "principal", "_deadline", "trailers_set")

    def __init__(self, ctx: grpc.ServicerContext, request_id: str, default_deadline_s: float | None):
        self._ctx = ctx
        self.request_id = request_id
        self.principal: Principal | None = None
        self.trailers_set = False
        self._deadline: float | None = None
        if default_deadline_s:
            left = ctx.time_remaining()
            if left is None or left > NO_DEADLINE:
                self._deadline = time.monotonic() + default_deadline_s

    def time_remaining(self) -> float | None:
        left = self._ctx.time_remaining()
        if self._deadline is not None:
            own = max(0.0, self._deadline - time.monotonic())
            return own if left is None else min(left, own)
        return left

    def set_trailing_metadata(self, metadata) -> None:
        self.trailers_set = True
        self._ctx.set_trailing_metadata((*metadata, (REQUEST_ID_KEY, self.request_id)))

    # Asked on every call: direct, not through __getattr__.
    def code(self):
        return self._ctx.code()

    def is_active(self) -> bool:
        return self._ctx.is_active()

    def __getattr__(self, name: str):
        return getattr(self._ctx, name)


@dataclass
class Limits:
    max_concurrent: int | None = None  # unary calls at work at once; None: no bound
    default_deadline_s: float | None = None  # for calls without a client deadline; None: none


class Gate(grpc.ServerInterceptor):
    def __init__(self, tokens: TokenStore | None = None, limits: Limits | None = None,
                 metrics: Metrics | None = None):
        self.tokens = tokens
        self.limits = limits or Limits()
        self.metrics = metrics
        n = self.limits.max_concurrent
        self._slots = threading.BoundedSemaphore(n) if n else None
        self._wrapped: dict[str, tuple] = {}  # method -> (grpc's handler, the same wrapped)
        # Set as the server stops: new calls are turned away UNAVAILABLE (retried elsewhere), not left for grpc to
        # CANCEL as it stops accepting them.
        self.closing = False
        # Cluster mode: whether a call was passed on by another replica (admitted by that one's limit already; it
        # is served beyond this one's, bounded by the peers' own limits).
        self.passed_on: Callable[[Sequence[tuple[str, str]]], bool] | None = None

    def _from_peer(self, context: grpc.ServicerContext) -> bool:
        return self.passed_on is not None and self.passed_on(context.invocation_metadata() or ())

    def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = continuation(details)
        if handler is None:
            return None  # UNIMPLEMENTED, answered by grpc itself
        method = details.method
        # grpc asks on every call; a method's handler is the same object each time, so wrap it once.
        hit = self._wrapped.get(method)
        if hit is not None and hit[0] is handler:
            return hit[1]
        wrapped = self._wrap(handler, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, handler, method: str):
        name = method.rsplit("/", 1)[-1]
        permission = permission_of(method)
        if handler.unary_unary is not None:
            behavior = self._unary(handler.unary_unary, method, name, permission)
            return handler._replace(unary_unary=behavior)
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=self._stream(handler.unary_stream, method, name, permission))
        if handler.stream_stream is not None:
            return handler._replace(stream_stream=self._stream(handler.stream_stream, method, name, permission))
        if handler.stream_unary is not None:
            return handler._replace(stream_unary=self._unary(handler.stream_unary, method, name, permission))
        return handler

    # --- the checks ----------------------------------------------------------------------------------------------
    def _deny(self, ctx: CallContext, code: grpc.StatusCode, message: str, field: str) -> None:
        ctx.set_trailing_metadata(((FIELD_KEY, field),))
        ctx.abort(code, message)

    def _authorize(self, ctx: CallContext, method: str, permission: str | None) -> None:
        if self.tokens is None or permission is None:
            return
        token = bearer(ctx.invocation_metadata())
        if token is None:
            audit.warning("unauthenticated call to %s from %s: no bearer token", method, ctx.peer(),
                          extra={"method": method, "peer": ctx.peer()})
            self._deny(ctx, grpc.StatusCode.UNAUTHENTICATED,
                       "authorization: missing; send `authorization: Bearer <token>` metadata", "authorization")
        principal = self.tokens.lookup(token)
        del token
        if principal is None:
            audit.warning("unauthenticated call to %s from %s: unknown token", method, ctx.peer(),
                          extra={"method": method, "peer": ctx.peer()})
            self._deny(ctx, grpc.StatusCode.UNAUTHENTICATED, "authorization: unknown token", "authorization")
        ctx.principal = principal
        if permission not in principal.permissions:
            audit.warning("%s (role %s) may not call %s", principal.name, principal.role, method,
                          extra={"method": method, "peer": ctx.peer(), "principal": principal.name})
            self._deny(ctx, grpc.StatusCode.PERMISSION_DENIED,
                       f"authorization: {principal.name!r} (role {principal.role}) may not call {method}; "
                       f"it needs the {permission} permission", "authorization")

    def _ender(self, method: str, name: str) -> Callable[[CallContext, float, bool], None]:
        """What runs when a call of `method` ends: its latency and status in the metrics (the method's labelled
        series bound once, not looked up per call) and the access log line."""
        m = self.metrics
        observe = m.rpc_seconds.labels(name).observe if m is not None else None
        errors: dict[grpc.StatusCode, Callable[[], None]] = {}
        ok, unknown = grpc.StatusCode.OK, grpc.StatusCode.UNKNOWN
        clock = time.perf_counter

        def end(ctx: CallContext, started: float, failed: bool) -> None:
            code = ctx.code()
            if code is None:
                code = unknown if failed else ok
            seconds = clock() - started
            if observe is not None:
                observe(seconds)
                if code is not ok:
                    inc = errors.get(code)
                    if inc is None:
                        inc = errors[code] = m.rpc_errors.labels(name, code.name).inc
                    inc()
            if log.isEnabledFor(logging.DEBUG):
                who = ctx.principal.name if ctx.principal else ""
                log.debug("%s %s %.2f ms", method, code.name, seconds * 1000,
                          extra={"method": method, "code": code.name, "ms": round(seconds * 1000, 3),
                                 "principal": who})

        return end

    # --- wrappers ------------------------------------------------------------------------------------------------
    def _unary(self, behavior: Callable, method: str, name: str, permission: str | None) -> Callable:
        limited = permission not in (None, OPERATE) and self._slots is not None
        deadline = self.limits.default_deadline_s if permission is not None else None
        end = self._ender(method, name)
        authorize = self._authorize if self.tokens is not None and permission is not None else None
        slots = self._slots
        m = self.metrics
        inflight_inc = m.inflight.inc if m is not None else None
        inflight_dec = m.inflight.dec if m is not None else None
        clock = time.perf_counter
        rid = logs.request_id

        def call(request, context):
            started = clock()
            ctx = CallContext(context, request_id_of(context.invocation_metadata()), deadline)
            token = rid.set(ctx.request_id)
            failed = True
            held = False
            if inflight_inc is not None:
                inflight_inc()
            try:
                if self.closing and permission is not None:
                    self._deny(ctx, grpc.StatusCode.UNAVAILABLE,
                               "server: shutting down; retry on another replica", "server")
                if authorize is not None:
                    authorize(ctx, method, permission)
                if limited and not self._from_peer(context):
                    held = slots.acquire(blocking=False)
                    if not held:
                        if m is not None:
                            m.overloaded.inc()
                        self._deny(ctx, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                   f"server: busy with its maximum of {self.limits.max_concurrent} concurrent "
                                   f"calls; retry with backoff or use another replica", "server")
                response = behavior(request, ctx)
                if not ctx.trailers_set:
                    ctx.set_trailing_metadata(())
                failed = False
                return response
            finally:
                if held:
                    slots.release()
                if inflight_dec is not None:
                    inflight_dec()
                end(ctx, started, failed)
                rid.reset(token)

        return call

    def _stream(self, behavior: Callable, method: str, name: str, permission: str | None) -> Callable:
        end = self._ender(method, name)

        def call(request, context) -> Iterator:
            started = time.perf_counter()
            ctx = CallContext(context, request_id_of(context.invocation_metadata()), None)
            failed = True
            token = logs.request_id.set(ctx.request_id)
            try:
                self._authorize(ctx, method, permission)
                ctx.set_trailing_metadata(())
            except BaseException:
                end(ctx, started, True)
                raise
            finally:
                logs.request_id.reset(token)
            try:
                yield from behavior(request, ctx)
                failed = False
            finally:
                end(ctx, started, failed)

        return call
