"""`scheduler expand`: where to add accelerators, how many and by when, at the least total cost.

options.py (the options file), steps.py (representative steps and their fleet problems), model.py (the MIP and
the evaluation of any set of additions under the same cost function), heuristics.py (the baselines to beat),
resimulate.py (proof by re-simulation), planner.py (the whole run), report.py (table, CSV, HTML).
"""
