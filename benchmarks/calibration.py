"""Calibration of the prefill queue (scheduler/queueing.py) against published serving benchmarks.

The figures are hard-coded below, one row per published number, each with its source; they mirror
../shared/reference/serving-latency.md (sections 1-3), which gives the sources in full (URL or repo + path +
commit):

  S1  NVIDIA NIM benchmarking guide, "Performance": Llama-3.3-70B, NIM 1.8.0, 2 x H100 fp8 TP2, 5000 in / 500
      out, closed loop (fixed concurrency 1-250), TTFT as tabulated (read as the mean), output throughput.
  S2  sgl-project/sglang benchmark/benchmark_vllm_060/README.md: Llama 3.1 8B on 1 x A100 and 70B on 4 x H100
      TP4, ShareGPT, Poisson arrivals at 4 and 8 requests/s, median TTFT, SGLang v0.3.0 and vLLM v0.6.0.
  S3  vLLM performance-benchmark CI build 9513: Llama-3 70B, H200 TP4, ShareGPT, Poisson 1 QPS: mean, median,
      p99 TTFT.

How each published setup maps onto the model
--------------------------------------------
* Servers: one engine instance (a TP group) is one server, c = accelerators // TP (queueing.servers). Every
  setup here is a single instance, so c = 1 (M/M/1); the project's pools are many instances (M/M/c), which
  this data cannot test.
* Arrival rate: open-loop rows (S2, S3) give it (Poisson, as the model assumes). Closed-loop rows (S1) give a
  number of concurrent clients; the rate they achieved is throughput / output tokens (S1's "Throughput" is
  output tokens/s, checked at concurrency 1: 500 / (TTFT + 499 x ITL) = 51.7). A closed loop is not a Poisson
  stream: it can never queue more requests than it has clients.
* Service time s (the prefill one request holds its server for) = prompt tokens / prefill tokens/s of one
  instance. Where the rate comes from (per series, in SERIES below):
    - S1: the source's own zero-load TTFTs at two prompt lengths (500 and 5000 tokens, concurrency 1): the
      slope, 4500 / (406.77 - 47.77) ms = 12,535 tokens/s per TP2 instance (~6,270 per H100, fp8).
    - S2 70B on H100 and S3 on H200: that S1-derived per-H100 rate x TP (an fp8 figure applied to bf16 runs,
      and H200 taken as H100 compute: both stated assumptions; at these loads u < 0.1, so the predictions
      barely depend on it).
    - S2 8B on A100: no A100 figure exists in the references or the topology: the yaml's h100 llm-8b figure is
      used as a proxy (an assumption). Below u = 0.5 the M/M/1 median wait is exactly 0, so the predicted
      median is the same for any s < 1 / (2 lambda).
* Fixed overhead d (HTTP, tokenization, scheduling, the first decode step): TTFT at zero load is d + s. The
  honest calibration backs d out of the source's own lowest-load figure, the "anchor": d = TTFT_anchor - s -
  W(anchor), where W is the model's wait for the anchor's statistic at the anchor's load (0 for S1's
  concurrency 1: one client cannot queue). The anchor is not scored. S2 and S3 give no zero-load point, so
  their anchor is the lowest load published (4 RPS; S3's median at 1 QPS).
* Prediction for a scored row: d + s + W, W = queueing.mean_wait_ms (mean), or queueing.wait_ms at the row's
  percentile (p50, p99), at utilization u = lambda s / c. RTT is 0 (clients ran on the serving host).
* "project" column, for comparison: the shipped figures alone, s = prompt / (topology prefill rate x TP), d =
  0, where the topology has the accelerator (only H100 here: A100 and H200 rows print "n/a").

What the comparison can and cannot show
---------------------------------------
It can show (a) whether the zero-load service times the topology assumes match measured ones (S1: the yaml's
12,000 tokens/s per H100 for llm-70b is ~2x the fastest rate found), (b) how the measured TTFT grows with load
against the M/M/1 curve through the same zero-load point, (c) where real servers stop behaving like a prefill
queue. It cannot validate the M/M/c tail for c > 1, nor the project's shares, because:
* Continuous batching: a real engine is not one request per server. Prefills of several waiting requests are
  batched into one forward pass and interleaved with running decodes, so at moderate load waiting grows more
  slowly than an exclusive M/M/1 predicts (S1 at concurrency 25 and 50 is over-predicted by 16% and 37%).
* Prefill-decode interference: decode iterations share the GPU with prefill; TTFT then includes waiting for
  the current iteration (vLLM with multi-step scheduling in S2 sits 70-150 ms above SGLang at both loads).
  With chunked prefill a long prompt is split across iterations, so its "service time" stretches with the
  decode batch.
* Decode / KV-cache saturation: S1's instance stops gaining throughput at ~1.84 req/s while its prefill alone
  would serve 2.46 req/s; from concurrency 100 requests wait for KV-cache room and TTFT grows 20-220x. The
  prefill-only queue sees u ~ 0.73 there and predicts ~1.5 s; these rows dominate the worst error. A pool's
  ceiling has to respect decode capacity too; this data says so, it does not say by how much at c > 1.
* Prompt-length variance: ShareGPT prompts vary from a few to thousands of tokens; at 1 QPS S3's p99 is 2x its
  median with no queueing at all. M/M/1's exponential service is a crude stand-in, and the model's p99 here is
  just d + s.
* Few points: 3 sources, 2 model classes, NVIDIA A100/H100/H200 only. Nothing was found for H20 or Ascend:
  their figures in the topology stay assumptions (reference section 6).

Usage: python benchmarks/calibration.py. Deterministic, no network, well under a second after imports. The
last line printed is one JSON object: {"calibration_points", "ttft_rel_error_median", "ttft_rel_error_worst",
"sources"}; the errors are |model - published| / published over the scored (non-anchor) rows, calibrated
column; "worst" is the largest such magnitude (its sign is in the table).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

from scheduler import queueing  # noqa: E402

# S4 (vLLM v0.6.0 blog): its 500-prompt ShareGPT sample averages 202 input / 179 output tokens
SHAREGPT_MEAN_INPUT = 202

SOURCES = {
    "S1": "https://docs.nvidia.com/nim/benchmarking/llm/1.0.0/performance.md"
          " (Llama-3.3-70B, NIM 1.8.0, 2xH100 fp8 TP2)",
    "S2": "github.com/sgl-project/sglang benchmark/benchmark_vllm_060/README.md"
          " @ 120affb9613cc3f5bcd055ec09c7621d3ced0ebc",
    "S3": "https://buildkite.com/vllm/performance-benchmark/builds/9513"
          " (Serving tests, serving_llama70B_tp4_sharegpt_qps_1)",
}

# S1 zero-load TTFT at two prompt lengths (concurrency 1): 5000 in -> 406.77 ms, 500 in -> 47.77 ms.
S1_INSTANCE_PREFILL_TPS = 4500 / ((406.77 - 47.77) / 1000.0)  # tokens/s of one TP2 instance, ~12,535
S1_PER_H100_PREFILL_TPS = S1_INSTANCE_PREFILL_TPS / 2  # ~6,270 (fp8)

# Per series: the setup and where its prefill rate comes from (tokens/s of one instance).
SERIES = {
    "nim70b-h100x2": dict(source="S1", model="llm-70b", accel="h100", n_accel=2, tp=2, isl=5000, osl=500,
                          prefill_tps=S1_INSTANCE_PREFILL_TPS,
                          rate_from="S1 zero-load slope, 500 vs 5000 tokens"),
    "sglang70b-h100x4": dict(source="S2", model="llm-70b", accel="h100", n_accel=4, tp=4,
                             isl=SHAREGPT_MEAN_INPUT, osl=None, prefill_tps=4 * S1_PER_H100_PREFILL_TPS,
                             rate_from="S1 per-H100 fp8 rate x 4 (assumption: bf16 run)"),
    "vllm70b-h100x4": dict(source="S2", model="llm-70b", accel="h100", n_accel=4, tp=4,
                           isl=SHAREGPT_MEAN_INPUT, osl=None, prefill_tps=4 * S1_PER_H100_PREFILL_TPS,
                           rate_from="S1 per-H100 fp8 rate x 4 (assumption: bf16 run)"),
    "sglang8b-a100x1": dict(source="S2", model="llm-8b", accel=None, n_accel=1, tp=1, isl=SHAREGPT_MEAN_INPUT,
                            osl=None, prefill_tps=None,  # from the topology's h100 llm-8b figure (proxy)
                            rate_from="proxy: topology h100 llm-8b (no A100 figure anywhere)"),
    "vllm8b-a100x1": dict(source="S2", model="llm-8b", accel=None, n_accel=1, tp=1, isl=SHAREGPT_MEAN_INPUT,
                          osl=None, prefill_tps=None,
                          rate_from="proxy: topology h100 llm-8b (no A100 figure anywhere)"),
    "vllm70b-h200x4": dict(source="S3", model="llm-70b", accel=None, n_accel=4, tp=4, isl=SHAREGPT_MEAN_INPUT,
                           osl=None, prefill_tps=4 * S1_PER_H100_PREFILL_TPS,
                           rate_from="S1 per-H100 fp8 rate x 4 (assumption: H200 = H100 compute)"),
}

# One row per published TTFT. load: ("conc", clients, output tok/s) closed loop, or ("rps", requests/s)
# Poisson.
# stat: "mean", "p50" or "p99". anchor: the series' lowest-load figure that calibrates d (not scored);
# zero_load: the anchor admits no queueing (closed loop with one client).
POINTS = [
    # S1: concurrency, TTFT ms (mean), output throughput tok/s
    dict(series="nim70b-h100x2", load=("conc", 1, 51.67), stat="mean", ttft=406.77, anchor=True,
         zero_load=True),
    dict(series="nim70b-h100x2", load=("conc", 5, 218.48), stat="mean", ttft=546.7),
    dict(series="nim70b-h100x2", load=("conc", 25, 623.4), stat="mean", ttft=688.69),
    dict(series="nim70b-h100x2", load=("conc", 50, 814.37), stat="mean", ttft=834.51),
    dict(series="nim70b-h100x2", load=("conc", 100, 917.26), stat="mean", ttft=7996.25),
    dict(series="nim70b-h100x2", load=("conc", 150, 920.9), stat="mean", ttft=34794.22),
    dict(series="nim70b-h100x2", load=("conc", 200, 920.54), stat="mean", ttft=61680.22),
    dict(series="nim70b-h100x2", load=("conc", 250, 920.12), stat="mean", ttft=88605.32),
    # S2: Poisson request rate, median TTFT ms
    dict(series="sglang8b-a100x1", load=("rps", 4.0), stat="p50", ttft=31.98, anchor=True),
    dict(series="sglang8b-a100x1", load=("rps", 8.0), stat="p50", ttft=35.68),
    dict(series="vllm8b-a100x1", load=("rps", 4.0), stat="p50", ttft=100.48, anchor=True),
    dict(series="vllm8b-a100x1", load=("rps", 8.0), stat="p50", ttft=120.39),
    dict(series="sglang70b-h100x4", load=("rps", 4.0), stat="p50", ttft=53.94, anchor=True),
    dict(series="sglang70b-h100x4", load=("rps", 8.0), stat="p50", ttft=58.11),
    dict(series="vllm70b-h100x4", load=("rps", 4.0), stat="p50", ttft=179.15, anchor=True),
    dict(series="vllm70b-h100x4", load=("rps", 8.0), stat="p50", ttft=207.12),
    # S3: Poisson 1 QPS (achieved 0.989745 req/s), mean / median / p99 TTFT ms
    dict(series="vllm70b-h200x4", load=("rps", 0.989745), stat="p50", ttft=58.6838, anchor=True),
    dict(series="vllm70b-h200x4", load=("rps", 0.989745), stat="mean", ttft=65.8942),
    dict(series="vllm70b-h200x4", load=("rps", 0.989745), stat="p99", ttft=117.731),
]


def topology_prefill_tps() -> dict[tuple[str, str], float] | None:
    """(model, accelerator) -> prefill tokens/s per accelerator in the shipped topology (None: won't load)."""
    try:
        from scheduler.model.loader import load_topology
        from scheduler.paths import DEFAULT_TOPOLOGY

        topo = load_topology(DEFAULT_TOPOLOGY).value
        return {(m.id, a): t.prefill_tokens_per_s for m in topo.models for a, t in m.throughput.items()}
    except Exception as exc:  # others edit the topology concurrently: the calibrated column does not need it
        print(f"note: topology not loaded ({type(exc).__name__}: {exc}); project column and 8B proxy skipped")
        return None


def arrival_rate(point: dict, osl: int | None) -> float:
    """Requests/s: given (Poisson rows) or achieved (closed loop: output tokens/s over output tokens each)."""
    kind, *rest = point["load"]
    return rest[0] if kind == "rps" else rest[1] / osl


def wait(stat: str, service_ms: float, c: int, u: float) -> float:
    """The model's wait for a statistic: the mean, or a percentile (closed form); inf at saturation."""
    if stat == "mean":
        return float(queueing.mean_wait_ms(service_ms, c, u))
    return float(queueing.wait_ms(service_ms, c, u, float(stat[1:])))


def rel(model: float, published: float) -> float:
    return (model - published) / published


def load_label(point: dict) -> str:
    kind, *rest = point["load"]
    return f"{rest[0]:g} RPS" if kind == "rps" else f"conc {rest[0]}"


def main() -> None:
    tps = topology_prefill_tps()
    for s in SERIES.values():
        if s["prefill_tps"] is None:
            s["prefill_tps"] = tps[(s["model"], "h100")] * s["tp"] if tps else None

    print("Published TTFT vs the M/M/c prefill model "
          "(c = accelerators // TP; s = prompt / instance prefill rate)")
    print(f"{'series':<17} {'src':<3} {'load':>11} {'stat':>4} {'lambda':>7} {'s ms':>7} {'u':>6} "
          f"{'d ms':>7} "
          f"{'published':>10} {'calibrated':>10} {'rel err':>8} {'project':>9} {'rel err':>8}")

    errors: list[float] = []
    groups: dict[str, list[float]] = {"closed loop, below decode saturation": [],
                                      "closed loop, past decode saturation (conc >= 100)": [],
                                      "open loop (Poisson)": []}
    project_errors: list[float] = []
    used_sources: set[str] = set()
    anchors: dict[str, float] = {}
    for point in POINTS:  # anchors first in each series (they come first in POINTS)
        spec = SERIES[point["series"]]
        lam = arrival_rate(point, spec["osl"])
        c = int(queueing.servers(spec["n_accel"], spec["tp"]))
        if spec["prefill_tps"] is None:
            print(f"{point['series']:<17} skipped: no prefill rate (topology not loaded)")
            continue
        s = 1000.0 * spec["isl"] / spec["prefill_tps"]
        u = lam * s / 1000.0 / c
        w = 0.0 if point.get("zero_load") else wait(point["stat"], s, c, u)
        if point.get("anchor"):
            anchors[point["series"]] = point["ttft"] - s - w  # the fixed overhead d
        d = anchors[point["series"]]
        model = d + s + w

        project = math.nan
        if tps and spec["accel"] and (spec["model"], spec["accel"]) in tps:
            sp = 1000.0 * spec["isl"] / (tps[(spec["model"], spec["accel"])] * spec["tp"])
            up = lam * sp / 1000.0 / c
            project = sp + (0.0 if point.get("zero_load") else wait(point["stat"], sp, c, up))

        anchor = point.get("anchor", False)
        err = rel(model, point["ttft"])
        perr = rel(project, point["ttft"]) if math.isfinite(project) else math.nan
        print(f"{point['series']:<17} {spec['source']:<3} {load_label(point):>11} {point['stat']:>4} "
              f"{lam:7.3f} "
              f"{s:7.1f} {u:6.3f} {d:7.1f} {point['ttft']:10.1f} {model:10.1f} "
              f"{'anchor' if anchor else f'{err:+.1%}':>8} "
              f"{'n/a' if math.isnan(project) else f'{project:.1f}':>9} "
              f"{'n/a' if math.isnan(perr) else f'{perr:+.1%}':>8}")
        if not anchor:
            errors.append(abs(err))
            used_sources.add(spec["source"])
            if point["load"][0] == "rps":
                groups["open loop (Poisson)"].append(abs(err))
            elif point["load"][1] >= 100:
                groups["closed loop, past decode saturation (conc >= 100)"].append(abs(err))
            else:
                groups["closed loop, below decode saturation"].append(abs(err))
        if math.isfinite(perr):
            project_errors.append(abs(perr))

    print()
    print("Service-time provenance per series (instance prefill tokens/s):")
    for name, spec in SERIES.items():
        rate = "n/a" if spec["prefill_tps"] is None else f"{spec['prefill_tps']:,.0f}"
        print(f"  {name:<17} {rate:>8}  {spec['rate_from']}")
    if tps:
        print(f"  topology h100 llm-70b: {tps[('llm-70b', 'h100')]:,.0f} tokens/s per accelerator vs "
              f"{S1_PER_H100_PREFILL_TPS:,.0f} measured (S1, fp8): "
              f"{tps[('llm-70b', 'h100')] / S1_PER_H100_PREFILL_TPS:.1f}x")
    print()
    for label, errs in groups.items():
        if errs:
            print(f"|rel err| {label}: n={len(errs)}, median {statistics.median(errs):.1%}, "
                  f"worst {max(errs):.1%}")
    if project_errors:
        print("|rel err| project figures alone (no overhead, topology prefill rate; H100 rows, anchors too): "
              f"n={len(project_errors)}, median {statistics.median(project_errors):.1%}, "
              f"worst {max(project_errors):.1%}")
    print("Sources:")
    for key in sorted(used_sources):
        print(f"  {key}: {SOURCES[key]}")

    finite = [e for e in errors if math.isfinite(e)]
    summary = {
        "calibration_points": len(errors),
        "ttft_rel_error_median": round(statistics.median(finite), 4) if finite else None,
        "ttft_rel_error_worst": (round(max(finite), 4) if finite and len(finite) == len(errors) else None),
        "sources": len(used_sources),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
