"""The stepping loop: at every step, each policy plans the step's demand through `Engine.plan` on the state's
snapshot, and its Trace records what the plan did.

Steps are independent (a fleet plan holds no reservations), so the only thing carried from step to step is the
world state. A plan is reused only when state, hour, policy and demand are all exactly those of an earlier step,
which makes the reuse exact (it happens with flat, noise-free demand).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from scheduler.model.schema import Topology
from scheduler.sim.demand import DemandSeries, generate
from scheduler.sim.metrics import Summary, Trace, summarize
from scheduler.sim.scenario import Event, Scenario
from scheduler.sim.world import Snapshot, World


@dataclass(frozen=True)
class Run:
    """Everything one simulation produced; writers and plots read it, nothing changes it."""

    scenario: Scenario
    topology: Topology
    version: str
    demand: DemandSeries
    transitions: list[tuple[int, Snapshot, list[Event]]]  # (first step, snapshot, events) per state change
    state: np.ndarray  # (S,) snapshot index per step
    traces: dict[str, Trace]
    seconds: float  # wall time of the loop

    @property
    def minutes(self) -> np.ndarray:
        return self.demand.minutes

    @property
    def sites(self) -> list[str]:
        return [s.id for s in self.topology.sites]

    @property
    def cables(self) -> list[str]:
        return [c.id for c in self.topology.cables]

    def summaries(self) -> list[Summary]:
        return [summarize(self.traces[p]) for p in self.scenario.policies]

    def events(self) -> list[tuple[float, str]]:
        """(minute, title) of every event, for marking plots and listing in reports."""
        return [(e.at, e.title()) for e in self.scenario.timeline()]


def china_hour(minute: float) -> int:
    """The scenario starts at 00:00 China time, in which tariffs are written."""
    return int(minute // 60) % 24


def simulate(scenario: Scenario, topology: Topology, version: str = "", progress: bool = False,
             world: World | None = None) -> Run:
    start = time.perf_counter()
    world = world or World(topology, version)
    demand = generate(scenario, topology)
    transitions = world.timeline(scenario)
    sites = [s.id for s in topology.sites]
    cables = [c.id for c in topology.cables]
    traces = {p: Trace(p, scenario.steps, sites, cables, scenario.step) for p in scenario.policies}
    state = np.zeros(scenario.steps, dtype=np.int64)
    changes = {step: snap for step, snap, _ in transitions}
    seen: dict[tuple, int] = {}  # (snapshot, hour, demand bytes) -> first step planned with exactly that
    snap = transitions[0][1]
    bar = tqdm(total=scenario.steps, desc=scenario.name, unit="step", file=sys.stderr, disable=not progress,
               leave=False, mininterval=0.5)
    try:
        for i in range(scenario.steps):
            snap = changes.get(i, snap)
            state[i] = snap.index
            hour = china_hour(float(demand.minutes[i]))
            key = (snap.index, hour, demand.rates[i].tobytes())
            j = seen.get(key)
            if j is not None:
                for trace in traces.values():
                    trace.copy_step(i, j)
            else:
                seen[key] = i
                cells = demand.at(i)
                for policy, trace in traces.items():
                    t0 = time.perf_counter()
                    plan = snap.engine.plan(cells, hour, policy)
                    trace.plan_seconds += time.perf_counter() - t0
                    trace.record(i, plan, snap)
                    trace.note_solver(plan)
            bar.update(1)
    finally:
        bar.close()
    return Run(scenario, topology, version, demand, transitions, state, traces, time.perf_counter() - start)
