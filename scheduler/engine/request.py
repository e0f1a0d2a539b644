"""What callers ask the engine: request batches and demand, checked against the topology before any solving."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

MAX_TOKENS = 10_000_000
MAX_REQUESTS = 1_000_000


class InvalidRequest(ValueError):
    """A request the engine cannot interpret; `field` names the offending field for the caller."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


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
}


@dataclass(frozen=True)
class Slo:
    ttft_ms: float
    e2e_ms: float


def check_batch(batch: Batch, regions: dict, models: set[str], data_classes: set[str], prefix: str = "") -> Slo:
    """Validate a batch against the topology; returns its effective SLO (request's own or the region default)."""
    def bad(name: str, message: str) -> InvalidRequest:
        return InvalidRequest(prefix + name, message)

    if batch.region not in regions:
        raise bad("region", f"unknown region {batch.region!r}")
    if batch.model not in models:
        raise bad("model", f"unknown model {batch.model!r}")
    if batch.data_class not in data_classes:
        raise bad("data_class", f"unknown data class {batch.data_class!r}")
    for name in ("input_tokens", "output_tokens"):
        value = getattr(batch, name)
        if not isinstance(value, int) or value < 0 or value > MAX_TOKENS:
            raise bad(name, f"must be an integer in 0..{MAX_TOKENS}, got {value!r}")
    if batch.input_tokens + batch.output_tokens == 0:
        raise bad("output_tokens", "a batch needs input_tokens or output_tokens above zero")
    if not 1 <= batch.requests <= MAX_REQUESTS:
        raise bad("requests", f"must be in 1..{MAX_REQUESTS}, got {batch.requests!r}")
    default = regions[batch.region].slo
    ttft = batch.ttft_ms if batch.ttft_ms is not None else default.ttft_ms
    e2e = batch.e2e_ms if batch.e2e_ms is not None else default.e2e_ms
    for name, value in (("ttft_ms", batch.ttft_ms), ("e2e_ms", batch.e2e_ms)):
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise bad(name, f"must be a positive number of milliseconds, got {value!r}")
    if ttft is None and e2e is None:
        raise bad("ttft_ms", "no SLO: give ttft_ms or e2e_ms (the region has no default)")
    return Slo(ttft if ttft is not None else math.inf, e2e if e2e is not None else math.inf)


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

    def as_batch(self) -> Batch:
        return Batch(self.region, self.model, self.input_tokens, self.output_tokens, 1, self.ttft_ms, self.e2e_ms,
                     self.data_class)


