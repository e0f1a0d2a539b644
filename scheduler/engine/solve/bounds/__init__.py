"""Lower bounds on the batch problem's objective: capacity_prices.py (Lagrangian duality at pool and cable prices,
raised by subgradient.py's ascent) and ceiling_aware.py (duality over the assignment rows that sees the ceilings,
its inner loop compiled in knapsack_kernel.py)."""
