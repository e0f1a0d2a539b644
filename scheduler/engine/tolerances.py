"""The engine's float tolerances, each named once. Float noise, never capacity: a test that moves one of these moves
an answer only where two quantities were equal up to rounding.

LOAD: accelerators (a pool's load against its capacity, a ceiling or a level); the ledger's `TOLERANCE` is the same.
GBPS: Gbps on a cable against its bandwidth.
COST: CNY, absolute: a saving, a gain or a margin smaller than this is none.
TIGHT: accelerators in the ceiling-aware bound's knapsacks, where a load fits its room up to this (tighter than
LOAD: a bound may err low, never high).
RELATIVE: a share of a value (an objective that must fall by more than this share to count as lower; a flow share
below it counts as none).
"""

LOAD = 1e-9
GBPS = 1e-12
COST = 1e-12
TIGHT = 1e-12
RELATIVE = 1e-9
