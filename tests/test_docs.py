"""Tier (a), pure: the docs agree with the code (schema columns, benchmark scripts, module map)."""

import re
from pathlib import Path

from batchlaw.plugin import logschema


def test_schema_doc_lists_every_column():
    text = (Path(__file__).resolve().parents[1] / "docs" / "hdf5_schema.md").read_text()
    documented = set(re.findall(r"^\| `(\w+)` \| [if]8 \|", text, flags=re.M))
    assert documented == set(logschema.STEP_COLUMNS)
    for attr in logschema.ATTRS:
        assert f"`{attr}`" in text


ROOT = Path(__file__).resolve().parents[1]


def test_one_benchmark_script_and_one_doc_section_per_figure():
    """Benchmark scripts live in benchmarks/ only, each headed by exactly one section of docs/benchmarks.md
    (no second script or second doc for the same figures, as tools/bench_fits.py and docs/bench-fits.md were)."""
    stray = [p for d in ("simulator", "plugin", "tools") for p in (ROOT / d).glob("bench*.py")]
    assert not stray, stray
    assert [p.name for p in (ROOT / "docs").glob("bench*.md")] == ["benchmarks.md"]
    headings = re.findall(r"^## .*$", (ROOT / "docs" / "benchmarks.md").read_text(), flags=re.M)
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        assert sum(f"benchmarks/{script.name}" in h for h in headings) == 1, script.name
