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


def test_architecture_names_every_module_and_the_layering_test_cites_it():
    """docs/architecture.md says which module owns what: every module file of the three packages is named
    there (under its folder's heading), and tests/test_layering.py cites that file."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    for package in ("simulator", "plugin", "tools"):
        section = text.split(f"`{package}/` (", 1)[1].split("\n\n`", 1)[0]
        missing = [p.name for p in sorted((ROOT / package).glob("*.py"))
                   if p.name != "__init__.py" and f"`{p.name}`" not in section]
        assert not missing, f"docs/architecture.md does not say what {package}/{missing} own"
    cited = re.findall(r"\b(?:docs/)?[\w]+\.md\b", (ROOT / "tests" / "test_layering.py").read_text())
    assert "docs/architecture.md" in cited and all((ROOT / c).is_file() or (ROOT / "docs" / c).is_file() for c in cited)


def test_no_figure_is_called_deterministic():
    """A figure in the docs is a range over machines with the machine named: docs/benchmarks.md called demo results
    measured on one machine "(deterministic)", and another machine's fresh clones gave 2 of 3 optima bracketed
    and no law where it recorded 3 of 3 and a law."""
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        hits = [line for line in path.read_text().splitlines() if re.search(r"\bdeterministic", line, flags=re.I)]
        assert not hits, f"{path.name}: {hits}"
    readme = (ROOT / "README.md").read_text()
    assert "about 4 minutes" not in readme and "6 min 19 s" in readme and "2-core x86-64 dev box" in readme
