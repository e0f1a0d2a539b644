"""The batch solver: many batches placed jointly at least cost under capacity, every SLO ceiling and the cables.

Entry point: `pipeline.solve(problem, time_limit_s) -> problem.Assignment`, on a `problem.BatchProblem` built by
`problem.build`. The stages, in the order pipeline.py runs them: price (group_prices.py), assign (greedy.py), repair
(repair.py, with exact_cpsat.py), improve (local_search.py, pool_levels.py on candidates.py's lists) and bound
(bounds/). docs/engine.md has the map. Imports run one way: problem <- stages <- pipeline.
"""
