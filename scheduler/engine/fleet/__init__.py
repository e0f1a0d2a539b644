"""The fleet plan: routing fractions per demand cell over sites (plan.py), its arrays (problem.py), the `optimal`
policy's ceiling-aware search (optimal.py) and the baselines (greedy.py)."""

from scheduler.engine.fleet.plan import HEURISTIC, POLICIES, FleetPlan, PlanRow, Share, plan

__all__ = ["HEURISTIC", "POLICIES", "FleetPlan", "PlanRow", "Share", "plan"]
