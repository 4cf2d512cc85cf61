"""Tier (a), pure (AST; reads megatron-core's source when installed): megatron-core is reached only
through ``plugin/_mcore.py`` (DESIGN.md rule 2, issue 20 item 3).

- No module of the package other than ``plugin/_mcore.py`` imports megatron, in any import form.
- No megatron name (``MEGATRON_NAMES``: attributes megatron sets on its modules, parameters and
  optimizers, and the keyword arguments of its entry points) appears outside ``plugin/_mcore.py`` as
  an attribute, a keyword or parameter name, a function name, or a ``getattr``/``hasattr`` string.
  The list is kept honest both ways: each name is used by ``_mcore.py`` and occurs in the installed
  megatron-core's source.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("plugin", "simulator", "tools")
ADAPTER = REPO / "plugin" / "_mcore.py"

MEGATRON_NAMES = {
    # DistributedDataParallel and its buffers / bucket groups
    "module", "zero_grad_buffer", "bucket_groups", "grad_data", "start_grad_sync", "expert_parallel_buffers",
    "expert_parallel_bucket_groups", "finalize_model_grads_func", "no_sync_func",
    # attributes megatron sets on parameters
    "main_grad", "shared_embedding", "tensor_model_parallel", "partition_dim",
    # GPTModel internals
    "share_embeddings_and_output_weights", "decoder", "layer_number",
    # MegatronOptimizer
    "get_loss_scale", "scale_loss", "chained_optimizers", "grad_scale_func",
    # the schedule's and the microbatch calculator's arguments
    "forward_step_func", "data_iterator", "num_microbatches", "seq_length", "micro_batch_size",
    "rampup_batch_size", "step_batch_size_schedule", "parallel_state",
}
SINCE = {"step_batch_size_schedule": (0, 18)}  # megatron-core version that introduced the name
ALLOWED: set[tuple[str, str]] = set()  # (file, name) pairs let through; none since the ramp converters moved


def _megatron_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        found += [n for n in names if n == "megatron" or n.startswith("megatron.")]
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                "__import__", "import_module") and node.args and isinstance(node.args[0], ast.Constant) \
                and str(node.args[0].value).startswith("megatron"):
            found.append(str(node.args[0].value))
    return found


def _names(path: Path) -> set[str]:
    """Every attribute, keyword, parameter and function name, and every getattr/hasattr/setattr string."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Attribute):
            out.add(node.attr)
        elif isinstance(node, ast.keyword) and node.arg:
            out.add(node.arg)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.add(node.name)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("getattr", "hasattr", "setattr") \
                and len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
            out.add(str(node.args[1].value))
    return out


def _package_files() -> list[Path]:
    return [p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py")) if p != ADAPTER]


def test_only_the_adapter_imports_megatron():
    offenders = {str(p.relative_to(REPO)): _megatron_imports(p) for p in _package_files() if _megatron_imports(p)}
    assert offenders == {}
    assert _megatron_imports(ADAPTER)  # the check itself can see an import


def test_import_check_catches_every_import_form(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import megatron.core\nfrom megatron.core import parallel_state\n"
                   "def f():\n    from megatron.core.datasets import x\n    __import__('megatron.core')\n")
    assert len(_megatron_imports(src)) == 4


def test_no_megatron_name_outside_the_adapter():
    offenders = {}
    for p in _package_files():
        rel = p.relative_to(REPO).as_posix()
        bad = sorted(n for n in _names(p) & MEGATRON_NAMES if (rel, n) not in ALLOWED)
        if bad:
            offenders[rel] = bad
    assert offenders == {}


def test_name_check_catches_each_form(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f(model, data_iterator):\n    model.module.zero_grad_buffer()\n"
                   "    getattr(p, 'shared_embedding', False)\n    g(num_microbatches=2)\n"
                   "def zero_grad_buffer():\n    pass\n")
    assert _names(src) & MEGATRON_NAMES == {"data_iterator", "module", "zero_grad_buffer", "shared_embedding",
                                            "num_microbatches"}


def test_every_listed_name_is_the_adapters_and_megatrons():
    adapter = ADAPTER.read_text()
    unused = sorted(n for n in MEGATRON_NAMES if not re.search(rf"\b{n}\b", adapter))
    assert unused == []  # a name the adapter no longer reaches leaves the list
    spec = importlib.util.find_spec("megatron.core")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("megatron-core is not installed: the list cannot be checked against its source")
    from importlib.metadata import version

    installed = tuple(int(x) for x in re.findall(r"\d+", version("megatron-core"))[:2])
    root = Path(list(spec.submodule_search_locations)[0])
    source = "\n".join(p.read_text(errors="replace") for p in root.rglob("*.py"))
    absent = sorted(n for n in MEGATRON_NAMES
                    if installed >= SINCE.get(n, (0, 0)) and not re.search(rf"\b{n}\b", source))
    assert absent == []
