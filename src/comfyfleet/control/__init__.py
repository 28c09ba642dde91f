"""Control: pure planners and the loops that execute their decisions (pool, idle, jobs, costs)."""
