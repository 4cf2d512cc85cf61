"""Public data sets shipped with batchlaw (data only: CSV files with their PROVENANCE; found with
importlib.resources by batchlaw.simulator.resources, never imported for code)."""
