"""One expansion run: the instance, the baselines, the optimum (started from the cheaper baseline), and the proof
by re-simulation of the original scenario beside the scenario with the additions."""

from __future__ import annotations

import time
from dataclasses import dataclass

from scheduler.expand import heuristics
from scheduler.expand.model import Additions, Evaluation, Solution, evaluate, optimize
from scheduler.expand.options import Option
from scheduler.expand.resimulate import JUDGED_POLICY, resimulate, unfixable
from scheduler.expand.steps import Instance, build_instance
from scheduler.sim.loop import Run
from scheduler.sim.metrics import Summary
from scheduler.sim.scenario import LoadedScenario

TARGET_PCT = 99.9  # of demand served within the SLO after the additions, by re-simulation


@dataclass(frozen=True)
class Expansion:
    instance: Instance
    before: Evaluation  # no additions, same steps and cost function
    baselines: dict[str, Evaluation]
    optimum: Solution
    original: Run
    resimulated: Run
    unfixable: list[str]  # what no allowed addition fixes (empty when the target is met)
    seconds: float

    @property
    def additions(self) -> Additions:
        return self.optimum.evaluation.additions

    def ratio(self, baseline: str) -> float:
        """The optimum's total cost over the baseline's (same function, same steps): at most 1."""
        other = self.baselines[baseline].total_cny
        return self.optimum.evaluation.total_cny / other if other > 0 else 1.0

    def judged(self, run: Run) -> Summary:
        return next(s for s in run.summaries() if s.policy == JUDGED_POLICY)

    @property
    def served_pct(self) -> float:
        """Demand served within the SLO after the additions, by re-simulation (the judged policy): the tokens it
        serves, each on a pool kept at or below its ceiling, so that the SLO's percentile of requests meet it."""
        return served_pct(self.judged(self.resimulated))

    @property
    def met(self) -> bool:
        return self.served_pct >= TARGET_PCT


def served_pct(summary: Summary) -> float:
    """Tokens served over tokens demanded, as a percentage (the simulator's SLO attainment counts, besides, the
    modelled share of requests within the bound, which a pool at its ceiling keeps at exactly the percentile)."""
    return 100.0 * summary.tokens_served / summary.tokens_demanded if summary.tokens_demanded > 0 else 100.0


def expand(loaded: LoadedScenario, options: list[Option], budget: float | None = None,
           by_day: int | None = None) -> Expansion:
    start = time.perf_counter()
    inst = build_instance(loaded, options, by_day)
    before = evaluate(inst, Additions())
    baselines = {name: heuristics.run(inst, name, budget) for name in heuristics.HEURISTICS}
    optimum = optimize(inst, budget, list(baselines.values()))
    original = resimulate(inst, Additions())
    after = resimulate(inst, optimum.evaluation.additions)
    result = Expansion(inst, before, baselines, optimum, original, after, [], 0.0)
    why = [] if result.met else unfixable(inst, optimum.evaluation)
    return Expansion(inst, before, baselines, optimum, original, after, why, time.perf_counter() - start)
