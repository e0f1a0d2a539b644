"""The large solve's greedy internals: the ranking it walks must be exactly a stable argsort of the priced costs."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.engine import priced


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 80), st.integers(0, 2**32 - 1))
def test_ranking_walks_each_row_like_a_stable_argsort_of_its_feasible_targets(rows, cols, seed):
    rng = np.random.default_rng(seed)
    rc = rng.integers(0, 6, size=(rows, cols)).astype(float)  # few values: many ties, also at the RANKED-th
    rc[rng.random((rows, cols)) < 0.3] = np.inf  # infeasible pairs
    ranking = priced._Ranking(rc)
    for r in range(rows):
        expected = np.argsort(rc[r], kind="stable")[: int(np.isfinite(rc[r]).sum())].tolist()
        assert list(ranking.candidates(r)) == expected
