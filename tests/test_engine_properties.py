"""Property tests on random synthetic topologies with random cuts and outages: whatever the policy, every
placement meets its SLO once everything placed runs, its data class, every capacity and every cable, and nothing
lands on a down site or crosses a cut cable; and the batch solver, on either path, is held to an exact reference
model of the same problem (tests/batch_oracle.py, a plain MIP): its bound never above the optimum, its answer
never below it."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings, strategies as st

from scheduler import synth
from scheduler.engine import baselines
from scheduler.engine.solve import pipeline
from scheduler.engine.core import Engine
from scheduler.model.schema import Status
import batch_oracle
from engine_fixtures import random_batches, recheck

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def worlds(draw):
    sites = draw(st.integers(2, 8))
    topo = synth.generate(sites, draw(st.integers(1, 4)), seed=draw(st.integers(0, 10_000)),
                          cables=draw(st.integers(0, len(synth.CABLES))))
    size = 8 * draw(st.integers(1, 8))  # small pools, so capacity and ceilings bind
    down = draw(st.sets(st.sampled_from([s.id for s in topo.sites]), max_size=sites - 1))
    topo = topo.model_copy(update={"sites": [
        s.model_copy(update={"status": Status.down if s.id in down else s.status,
                             "pools": [p.model_copy(update={"count": size}) for p in s.pools]})
        for s in topo.sites]})
    eng = Engine.from_topology(topo, "prop")
    cut = draw(st.sets(st.sampled_from([c.id for c in topo.cables]))) if topo.cables else set()
    if cut:
        eng.set_links(sorted(cut), up=False)
    classes = tuple(d.id for d in topo.data_classes)
    batches = random_batches(topo, draw(st.integers(1, 40)), draw(st.integers(0, 10_000)), requests=(1, 30),
                             ttft=(150, 3000), classes=("public",) * 3 + classes)
    return eng, cut, batches, draw(st.integers(0, 23))


@SETTINGS
@given(worlds())
def test_single_placements_one_after_another(world):
    eng, cut, batches, hour = world
    decisions = [eng.place(b, hour=hour) for b in batches]
    assert recheck(eng.catalog, decisions, hour, cut=cut) == []
    for d in decisions:
        assert d.placed == bool(d.reservation_ids) and (d.placed or d.message)


@SETTINGS
@given(worlds())
def test_joint_placement(world):
    eng, cut, batches, hour = world
    result = eng.place_many(batches, hour=hour)
    assert recheck(eng.catalog, result.decisions, hour, cut=cut) == []
    s = result.solution
    assert s.best_bound <= s.objective + 1e-9 and 0.0 <= result.gap <= 1.0
    assert all(d.placed or d.reason.value > 0 for d in result.decisions)


@SETTINGS
@given(worlds())
def test_joint_placement_on_the_large_path(world):
    """The LP-priced path (greedy, repair, local search, pool levels with the LP assignment, the ceiling-aware
    bound) forced on small worlds, where it meets every corner: down sites, cut cables, unserved batches."""
    eng, cut, batches, hour = world
    result = eng._joint(batches, hour, True, lambda problem: pipeline.solve(problem, 2.0, exact_pairs=0))
    assert recheck(eng.catalog, result.decisions, hour, cut=cut) == []
    s = result.solution
    assert s.best_bound <= s.objective + 1e-9 and 0.0 <= result.gap <= 1.0
    assert all(d.placed or d.reason.value > 0 for d in result.decisions)


def solved_against_the_oracle(eng, batches, hour, exact_pairs):
    """place_many's solve on the world (nothing reserved), and the exact optimum of the same problem."""
    seen = []

    def solver(problem):
        seen.append(problem)
        return pipeline.solve(problem, 2.0, exact_pairs=exact_pairs)

    result = eng._joint(batches, hour, False, solver)
    return result.solution, batch_oracle.solve(seen[0], result.solution.penalty)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.sampled_from([pipeline.EXACT_PAIRS, 0]))
def test_the_solver_is_held_to_the_exact_reference_model(world, exact_pairs):
    eng, _, batches, hour = world
    s, exact = solved_against_the_oracle(eng, batches, hour, exact_pairs)
    assert exact.optimal
    # Within 1e-4 of the optimum, not closer: exact_cpsat.py's integer model rounds every load up to 1e-4 of an
    # accelerator, so on a pool filled to within a few 1e-3 of a ceiling it can miss an assignment the exact model
    # keeps, and its "OPTIMAL" bound then stands above the true optimum (seen: 2e-5 relative, 3e-5 CNY); SCIP's own
    # feasibility tolerances (1e-6) leave the reference a little room the other way (seen: 1e-5 relative).
    tol = 1e-4 * max(1.0, abs(exact.objective))
    assert s.best_bound <= exact.objective + tol  # a valid bound
    assert s.objective >= exact.objective - tol  # a feasible answer cannot beat the optimum


@SETTINGS
@given(worlds(), st.sampled_from(baselines.POLICIES))
def test_baselines(world, policy):
    eng, cut, batches, hour = world
    result = eng.place_baseline(batches, policy, hour=hour)
    assert recheck(eng.catalog, result.decisions, hour, cut=cut) == []
