"""What callers ask the engine: request batches and demand, checked against the topology before any solving."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from scheduler.queueing import DEFAULT_PERCENTILE, PERCENTILES

MAX_TOKENS = 10_000_000
MAX_REQUESTS = 1_000_000
# Length limits on the strings a request carries, in characters (the API answers INVALID_ARGUMENT past them, so a
# request never makes the server hold, compare or echo an unbounded string). Generous for real use: topology ids
# are at most 64 characters (schema.Id), a link id "a~b" at most 129.
MAX_ID_CHARS = 256  # caller-chosen ids: a batch's id; a cable, segment or link id in SetLinkStatus
MAX_NAME_CHARS = 128  # names of things the topology or engine defines: region, model, data class, policy
QUOTE_CHARS = 64  # an error message quotes at most this much of a value it echoes (see `quote`)


class InvalidRequest(ValueError):
    """A request the engine cannot interpret; `field` names the offending field for the caller."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """A value for an error message: its repr, or for a longer one the repr of its first `limit` characters, an
    ellipsis and the original length (`'xxxx'... (20480 characters)`), so an error never grows with the input."""
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}... ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def too_long(value: object, limit: int) -> str | None:
    """The error message for a string over `limit` characters (None when it is within it, or not a string)."""
    if isinstance(value, str) and len(value) > limit:
        return f"at most {limit} characters, got {len(value)}"
    return None


@dataclass(frozen=True)
class Batch:
    region: str
    model: str
    input_tokens: int
    output_tokens: int
    requests: int = 1
    ttft_ms: float | None = None  # None: the region's default SLO
    e2e_ms: float | None = None
    data_class: str = "public"
    priority: int = 0
    id: str = ""
    percentile: float | None = None  # of the SLO's latencies: one of PERCENTILES; None: the region's default


# A batch's strings and their length limits, in the order `check_batch` judges them (before anything else).
BATCH_STRINGS = (("id", MAX_ID_CHARS), ("region", MAX_NAME_CHARS), ("model", MAX_NAME_CHARS),
                 ("data_class", MAX_NAME_CHARS))


class Reason(IntEnum):
    """Why a site was ruled out, in the order the filter checks; the first failing check is reported."""

    OK = 0
    NOT_SERVED = 1
    SITE_DOWN = 2
    UNREACHABLE = 3
    DATA_CLASS = 4
    TTFT = 5
    E2E = 6
    CAPACITY = 7
    CABLE = 8
    SOLVER_FAILED = 9  # the fleet plan's LP gave no answer: not a verdict on the demand

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    Reason.OK: "ok",
    Reason.NOT_SERVED: "does not serve the model",
    Reason.SITE_DOWN: "site is down",
    Reason.UNREACHABLE: "no route over up links",
    Reason.DATA_CLASS: "not allowed for the data class",
    Reason.TTFT: "time to first token over SLO",
    Reason.E2E: "end-to-end latency over SLO",
    Reason.CAPACITY: "no free capacity",
    Reason.CABLE: "cable bandwidth exhausted",
    Reason.SOLVER_FAILED: "the solver failed",
}


@dataclass(frozen=True)
class Slo:
    """The latency bounds a batch is judged against, met by `percentile` % of its requests (inf: unbounded)."""

    ttft_ms: float
    e2e_ms: float
    percentile: float = DEFAULT_PERCENTILE


def percentile_error(value: object) -> str | None:
    """Why a value is not a percentile an SLO may name (None when it is one)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value not in PERCENTILES:
        allowed = ", ".join(f"{p:g}" for p in PERCENTILES)
        return f"must be one of {allowed}, got {quote(value)}"
    return None


def check_batch(batch: Batch, regions: dict, models: set[str], data_classes: set[str], prefix: str = "") -> Slo:
    """Validate a batch against the topology; returns its effective SLO (request's own or the region default)."""
    def bad(name: str, message: str) -> InvalidRequest:
        return InvalidRequest(prefix + name, message)

    for name, limit in BATCH_STRINGS:
        message = too_long(getattr(batch, name, None), limit)
        if message is not None:
            raise bad(name, message)
    if batch.region not in regions:
        raise bad("region", f"unknown region {quote(batch.region)}")
    if batch.model not in models:
        raise bad("model", f"unknown model {quote(batch.model)}")
    if batch.data_class not in data_classes:
        raise bad("data_class", f"unknown data class {quote(batch.data_class)}")
    for name in ("input_tokens", "output_tokens"):
        value = getattr(batch, name)
        if not isinstance(value, int) or value < 0 or value > MAX_TOKENS:
            raise bad(name, f"must be an integer in 0..{MAX_TOKENS}, got {quote(value)}")
    if batch.input_tokens + batch.output_tokens == 0:
        raise bad("output_tokens", "a batch needs input_tokens or output_tokens above zero")
    if not 1 <= batch.requests <= MAX_REQUESTS:
        raise bad("requests", f"must be in 1..{MAX_REQUESTS}, got {quote(batch.requests)}")
    default = regions[batch.region].slo
    ttft = batch.ttft_ms if batch.ttft_ms is not None else default.ttft_ms
    e2e = batch.e2e_ms if batch.e2e_ms is not None else default.e2e_ms
    for name, value in (("ttft_ms", batch.ttft_ms), ("e2e_ms", batch.e2e_ms)):
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise bad(name, f"must be a positive number of milliseconds, got {quote(value)}")
    if ttft is None and e2e is None:
        raise bad("ttft_ms", "no SLO: give ttft_ms or e2e_ms (the region has no default)")
    own = getattr(batch, "percentile", None)
    if own is not None and (message := percentile_error(own)) is not None:
        raise bad("percentile", message)
    return Slo(ttft if ttft is not None else math.inf, e2e if e2e is not None else math.inf,
               float(own if own is not None else default.percentile))


@dataclass(frozen=True)
class Checked:
    """Valid batches column-wise, with each one's effective SLO as `check_batch` returns it."""

    slos: list[Slo]
    region: list[str]
    model: list[str]
    data_class: list[str]
    input_tokens: np.ndarray  # float, as the scoring works in
    output_tokens: np.ndarray
    requests: np.ndarray
    ttft_ms: np.ndarray  # the effective SLOs; inf: unbounded
    e2e_ms: np.ndarray
    percentile: np.ndarray  # the effective SLOs' percentiles


def check_batches(batches: Sequence[Batch], regions: Mapping, models, data_classes,
                  prefix: str = "batches[{}].") -> Checked:
    """`check_batch` for many batches at once: the same SLOs, or the same InvalidRequest for the first invalid
    batch (named by `prefix` formatted with its index), judged column-wise.

    The columns are screened with set and array operations; only batches the screen does not clear (and every
    batch, should a column hold values of unexpected types) go through `check_batch` itself, in request order, so
    it alone decides what is invalid and how the error reads.
    """
    n = len(batches)
    try:
        region, model = [b.region for b in batches], [b.model for b in batches]
        dclass, req = [b.data_class for b in batches], [b.requests for b in batches]
        inp, out = [b.input_tokens for b in batches], [b.output_tokens for b in batches]
        ttft, e2e = [b.ttft_ms for b in batches], [b.e2e_ms for b in batches]
        pct = [getattr(b, "percentile", None) for b in batches]
    except AttributeError:  # not a batch: fail where checking them one by one fails (an earlier one may be invalid)
        for i, b in enumerate(batches):
            check_batch(b, regions, models, data_classes, prefix.format(i))
        raise
    try:
        clear = _screen(n, regions, models, data_classes, region, model, dclass, inp, out, req, ttft, e2e, pct)
        ids = [getattr(b, "id", "") for b in batches]  # the one string no known set bounds: its length alone
        if max(map(len, ids), default=0) > MAX_ID_CHARS:
            clear = [ok and len(i) <= MAX_ID_CHARS for ok, i in zip(clear, ids)]
    except (TypeError, ValueError, OverflowError):  # values of unexpected types: let check_batch judge each one
        clear = [False] * n
    defaults = {r: (regions[r].slo.ttft_ms, regions[r].slo.e2e_ms, float(regions[r].slo.percentile))
                for r in set(region) if r in regions}
    slos: list[Slo] = []
    append = slos.append
    interned: dict[tuple, Slo] = {}  # by the request's own fields: most batches share a few SLOs
    for i, (r, t, e, q, ok) in enumerate(zip(region, ttft, e2e, pct, clear)):
        if ok:
            key = (r, t, e, q, type(t), type(e))  # 500 and 500.0 are equal keys, but check_batch keeps the type
            slo = interned.get(key)
            if slo is None:
                dt, de, dq = defaults[r]
                t = t if t is not None else dt
                e = e if e is not None else de
                if t is not None or e is not None:
                    slo = interned[key] = Slo(t if t is not None else math.inf, e if e is not None else math.inf,
                                              float(q if q is not None else dq))
            if slo is not None:
                append(slo)
                continue
        append(check_batch(batches[i], regions, models, data_classes, prefix.format(i)))
    return Checked(slos, region, model, dclass, np.array(inp, dtype=float), np.array(out, dtype=float),
                   np.array(req, dtype=float), np.array([s.ttft_ms for s in slos], dtype=float),
                   np.array([s.e2e_ms for s in slos], dtype=float),
                   np.array([s.percentile for s in slos], dtype=float))


def _screen(n: int, regions, models, data_classes, region: list, model: list, dclass: list, inp: list, out: list,
            req: list, ttft: list, e2e: list, percentile: list) -> list[bool]:
    """Per batch, True where every check of `check_batch` surely passes (False: let it judge)."""
    ok = np.ones(n, dtype=bool)
    for col, known in ((region, regions), (model, models), (dclass, data_classes)):
        if not set(col).issubset(known):
            ok &= np.fromiter((v in known for v in col), dtype=bool, count=n)
    ints = {int}  # exactly int: bool and other int-likes go to check_batch
    tokens = []
    for col, high, low in ((inp, MAX_TOKENS, 0), (out, MAX_TOKENS, 0), (req, MAX_REQUESTS, 1)):
        if not set(map(type, col)).issubset(ints):
            return [False] * n
        a = np.array(col, dtype=np.int64)
        ok &= (a >= low) & (a <= high)
        tokens.append(a)
    ok &= (tokens[0] + tokens[1]) != 0
    numbers = {type(None), int, float}
    for col in (ttft, e2e):
        if not set(map(type, col)).issubset(numbers):
            return [False] * n
        a = np.array([1.0 if v is None else v for v in col], dtype=float)
        ok &= (a > 0) & np.isfinite(a)
    if not set(map(type, percentile)).issubset(numbers):
        return [False] * n
    ok &= np.isin(np.array([DEFAULT_PERCENTILE if v is None else v for v in percentile], dtype=float), PERCENTILES)
    return ok.tolist()


@dataclass(frozen=True)
class DemandCell:
    """Steady demand for the fleet plan: tokens per second (input + output) from a region for a model.

    The typical request's input/output split converts it to the output-equivalent tokens the engine accounts in.
    """

    region: str
    model: str
    tokens_per_s: float
    data_class: str = "public"
    input_tokens: int = 2000  # a typical request, for the latency filter
    output_tokens: int = 500
    ttft_ms: float | None = None
    e2e_ms: float | None = None
    percentile: float | None = None  # None: the region's default

    def as_batch(self) -> Batch:
        return Batch(self.region, self.model, self.input_tokens, self.output_tokens, 1, self.ttft_ms, self.e2e_ms,
                     self.data_class, percentile=self.percentile)


