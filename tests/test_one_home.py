"""Tier (a), pure: one home per rule and per writer, checked on the AST of every module. ``precision = "auto"``
is resolved by ``spec.resolve_precision`` only (the trainer had its own copy of the rule); TOML is written by
``config.to_toml`` only (``system.save_system`` had a second writer with weaker escaping)."""

import ast
from pathlib import Path

from batchlaw.simulator.spec import resolve_precision

ROOT = Path(__file__).resolve().parents[1]
# (file, function) that may compare a value with "auto": the rule itself, and predict_table's vectorised
# column reader, which marks "auto" rows for ``table._resolve_auto`` (that calls resolve_precision)
ALLOWED = {("simulator/spec.py", "resolve_precision"), ("simulator/table.py", "normalise"),
           ("simulator/table.py", "_setting_columns")}


def _auto_comparisons(path: Path):
    tree = ast.parse(path.read_text())
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, ast.Compare) and any(isinstance(c, ast.Constant) and c.value == "auto"
                                                         for c in [node.left, *node.comparators]) \
                        and "seeds" not in ast.unparse(node):  # probe-cbs --seeds auto is another "auto"
                    yield fn.name, node.lineno


def test_auto_precision_is_resolved_in_one_place():
    found = {(str(p.relative_to(ROOT)), name, line) for d in ("simulator", "plugin", "tools")
             for p in sorted((ROOT / d).glob("*.py")) for name, line in _auto_comparisons(p)}
    stray = sorted(f for f in found if f[:2] not in ALLOWED)
    assert not stray, f"'auto' resolved outside spec.resolve_precision: {stray}"


def test_resolve_precision_takes_a_profile_name_or_a_device_class():
    assert [resolve_precision("auto", s) for s in ("cpu-gloo", "cpu", "h100-sxm", "gpu")] == ["fp32", "fp32", "bf16",
                                                                                             "bf16"]
    assert resolve_precision("fp16", "cpu") == "fp16"


def test_one_toml_writer():
    """Only simulator/config.py defines TOML functions (the loader and the writer); everything else calls them."""
    found = sorted((str(p.relative_to(ROOT)), node.name) for d in ("simulator", "plugin", "tools")
                   for p in sorted((ROOT / d).glob("*.py")) for node in ast.walk(ast.parse(p.read_text()))
                   if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and "toml" in node.name.lower())
    assert {f for f, _ in found} == {"simulator/config.py"}, found
