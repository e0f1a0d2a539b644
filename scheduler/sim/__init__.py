"""What-if simulation: scenarios driven through simulated time on the same engine the service uses.

scenario (schema + loading) -> demand (token rates per step) -> world (events -> catalog per state)
-> loop (plan each step with each policy) -> metrics (per step, per run) -> plots / report / sweep.
"""
