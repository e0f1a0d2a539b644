"""OR-Tools' C++ log off the planner's terminal."""

from __future__ import annotations


def quiet_solver_logs() -> None:
    """Keep OR-Tools' C++ log (one 'No solution exists' line per failed LP) off the planner's terminal.

    Process-wide, so only the simulate/sweep commands call it, never the library.
    """
    from ortools.init.python import init

    global _QUIET
    if _QUIET:
        return
    flags = init.CppFlags()
    flags.stderrthreshold = 3  # absl FATAL: errors that the simulator handles stay quiet
    init.CppBridge.set_flags(flags)
    _QUIET = True


_QUIET = False
