"""batchlaw.simulator: pure numpy/scipy core (specs, ramps, laws, fits, performance model, grid)."""
