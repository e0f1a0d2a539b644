"""exact_cpsat.py: the CP-SAT model of the batch problem reaches the optimum of the exact reference model
(tests/batch_oracle.py, a plain MIP), which itself matches exhaustive search; it keeps the pools and cables of its
`Room`, and it never overcommits whatever the rounding."""

from __future__ import annotations

import numpy as np
import pytest

import batch_oracle
from engine_fixtures import assert_feasible, engine, exhaustive, problem, small_instances
from scheduler.engine.solve import exact_cpsat
from scheduler.engine.solve import problem as joint

INSTANCES = small_instances()


@pytest.mark.parametrize("name,topology,batches,hour", INSTANCES, ids=[i[0] for i in INSTANCES])
def test_cp_sat_reaches_the_reference_optimum_which_matches_exhaustive_search(name, topology, batches, hour):
    p = problem(engine(topology), batches, hour)
    penalty = joint.penalty_of(p)
    reference = batch_oracle.solve(p, penalty)
    assert reference.optimal
    assert reference.objective == pytest.approx(exhaustive(p, penalty).objective, rel=1e-9)
    exact = exact_cpsat.solve(p, p.pairs(), np.arange(len(p.batches)),
                              exact_cpsat.Room(p.used, p.pool_cap, p.cable_free), penalty, 10.0)
    assert exact.status == "OPTIMAL"
    assert_feasible(p, exact.target)
    assert joint.objective_of(p, exact.target, penalty) == pytest.approx(reference.objective, rel=1e-9)
    assert exact.bound <= reference.objective + 1e-9


def test_a_hint_is_a_start_and_a_subset_of_batches_leaves_the_others_unplaced():
    name, topology, batches, hour = INSTANCES[0]
    p = problem(engine(topology), batches, hour)
    penalty = joint.penalty_of(p)
    some = np.arange(0, len(p.batches), 2)
    hint = np.full(len(p.batches), -1, dtype=np.int64)
    exact = exact_cpsat.solve(p, p.pairs(), some, exact_cpsat.Room(p.used, p.pool_cap, p.cable_free), penalty, 5.0,
                              hint=hint[some])
    assert exact.found
    others = np.setdiff1d(np.arange(len(p.batches)), some)
    assert (exact.target[others] == -1).all()
    assert_feasible(p, exact.target)
