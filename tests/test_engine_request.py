"""check_batches: the column-wise screen must judge exactly as check_batch, batch by batch, in request order."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings, strategies as st

from scheduler.engine.request import MAX_REQUESTS, MAX_TOKENS, Batch, InvalidRequest, check_batch, check_batches
from engine_fixtures import TINY, engine

CAT = engine(TINY).catalog
REGIONS = [r.id for r in TINY.regions]
MODELS = list(CAT.models)
CLASSES = list(CAT.data_classes)

tokens = st.one_of(st.integers(0, 5000), st.sampled_from([-1, 0, MAX_TOKENS, MAX_TOKENS + 1, 10 ** 30, True]),
                   st.floats(allow_nan=True), st.none())
requests = st.one_of(st.integers(-1, 3), st.sampled_from([0, MAX_REQUESTS, MAX_REQUESTS + 1, 2.5, math.nan, 10 ** 30]))
slo = st.one_of(st.none(), st.integers(-5, 5000), st.floats(allow_nan=True, allow_infinity=True),
                st.sampled_from([10 ** 400, "fast"]))


ODD = {"region": st.sampled_from(["atlantis"]), "model": st.sampled_from(["gpt-9"]),
       "data_class": st.sampled_from(["secret"]), "input_tokens": tokens, "output_tokens": tokens,
       "requests": requests, "ttft_ms": slo, "e2e_ms": slo,
       "percentile": st.sampled_from([97.0, 0, -95.0, math.nan, "95", True, 10 ** 400, 95])}


@st.composite
def batches(draw):
    """Valid batches, some with one or two fields swapped for odd values (so every check gets reached)."""
    out = []
    for _ in range(draw(st.integers(0, 12))):
        fields = dict(region=draw(st.sampled_from(REGIONS)), model=draw(st.sampled_from(MODELS)),
                      input_tokens=draw(st.integers(0, 4000)), output_tokens=draw(st.integers(0, 900)),
                      requests=draw(st.integers(1, 64)),
                      ttft_ms=draw(st.one_of(st.none(), st.sampled_from([500, 800.0, 1500.5]))),
                      e2e_ms=draw(st.one_of(st.none(), st.sampled_from([30_000, 60_000.0]))),
                      data_class=draw(st.sampled_from(CLASSES)),
                      percentile=draw(st.one_of(st.none(), st.sampled_from([50, 90.0, 95.0, 99, 99.9]))))
        if draw(st.integers(0, 5)) == 0:
            names = ["region", "model", "data_class"] + ["input_tokens", "output_tokens", "requests", "ttft_ms",
                                                         "e2e_ms", "percentile"] * 4  # later checks come less often
            for name in draw(st.lists(st.sampled_from(names), min_size=1, max_size=2)):
                fields[name] = draw(ODD[name])
        out.append(Batch(**fields))
    return out


def one_by_one(bs):
    return [check_batch(b, CAT.region_by_id, CAT.models, CAT.data_classes, f"batches[{i}].") for i, b in enumerate(bs)]


def outcome(f, bs):
    try:
        return ("ok", f(bs))
    except InvalidRequest as e:
        return ("invalid", e.field, e.message)
    except Exception as e:  # noqa: BLE001 - whatever check_batch raises, the screen must raise the same
        return ("error", type(e), str(e))


@settings(max_examples=300, deadline=None)
@given(batches())
def test_check_batches_judges_as_check_batch_one_by_one(bs):
    want = outcome(one_by_one, bs)
    got = outcome(lambda x: check_batches(x, CAT.region_by_id, CAT.models, CAT.data_classes).slos, bs)
    assert got == want
    if want[0] == "ok":  # the same SLO values, down to int vs float
        assert [(type(s.ttft_ms), type(s.e2e_ms)) for s in got[1]] == [(type(s.ttft_ms), type(s.e2e_ms))
                                                                       for s in want[1]]


def test_an_slo_names_its_percentile_or_takes_the_region_s():
    b = Batch("singapore", MODELS[0], 100, 20)
    assert check_batch(b, CAT.region_by_id, CAT.models, CAT.data_classes).percentile == 95.0  # the default
    for p in (50, 90.0, 99, 99.9):
        slo = check_batch(Batch("singapore", MODELS[0], 100, 20, percentile=p), CAT.region_by_id, CAT.models,
                          CAT.data_classes)
        assert slo.percentile == p and isinstance(slo.percentile, float)
    for bad in (97.0, 0, 100, -95.0, math.nan, "95", True):
        try:
            check_batch(Batch("singapore", MODELS[0], 100, 20, percentile=bad), CAT.region_by_id, CAT.models,
                        CAT.data_classes)
        except InvalidRequest as e:
            assert e.field == "percentile" and e.message.startswith("must be one of 50, 90, 95, 99, 99.9, got ")
        else:
            raise AssertionError(f"percentile {bad!r} accepted")


def test_check_batches_columns():
    bs = [Batch("singapore", MODELS[0], 100, 20, 3, ttft_ms=900), Batch("singapore", MODELS[0], 5, 0, 1, e2e_ms=8e3)]
    c = check_batches(bs, CAT.region_by_id, CAT.models, CAT.data_classes)
    assert c.slos == one_by_one(bs)
    assert c.input_tokens.tolist() == [100.0, 5.0] and c.output_tokens.tolist() == [20.0, 0.0]
    assert c.requests.tolist() == [3.0, 1.0] and c.region == ["singapore"] * 2 and c.model == [MODELS[0]] * 2
    assert c.ttft_ms.tolist() == [s.ttft_ms for s in c.slos] and c.e2e_ms.tolist() == [s.e2e_ms for s in c.slos]
    empty = check_batches([], CAT.region_by_id, CAT.models, CAT.data_classes)
    assert empty.slos == [] and empty.input_tokens.shape == (0,) and np.isnan(empty.e2e_ms).sum() == 0


def test_check_batches_reports_the_first_bad_batch_even_before_a_non_batch():
    bad = Batch("atlantis", MODELS[0], 10, 10)
    good = Batch(REGIONS[0], MODELS[0], 10, 10)
    try:
        check_batches([good, bad, None], CAT.region_by_id, CAT.models, CAT.data_classes)
    except InvalidRequest as e:
        assert e.field == "batches[1].region"
    else:
        raise AssertionError("no error")
