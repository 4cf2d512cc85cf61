"""The sbatch template and cluster env files shipped with batchlaw (data only; never imported for code)."""
