"""Configs shipped with batchlaw (data only; found with importlib.resources, never imported for code)."""
