"""Tier (a), pure: the dependency direction of docs/architecture.md. simulator/ and tools/ never import torch
or megatron (checked in a subprocess); simulator imports neither plugin nor tools, plugin never imports tools,
and tools takes from the plugin only its stdlib modules (checked on the AST of every module)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

MODULES_WITHOUT_TORCH = [
    "batchlaw.simulator",
    "batchlaw.simulator.config",
    "batchlaw.simulator.spec",
    "batchlaw.tools",
    "batchlaw.tools.cli",
    "batchlaw.plugin.logschema",
    "batchlaw.plugin.prelaunch",  # the pre-launch checks tools run (issue 20 item 4)
    "batchlaw.plugin.ckptfiles",
    "batchlaw.plugin.runmeta",
    "batchlaw.plugin.lease",  # submit and the sbatch script read leases (issue 21)
]


@pytest.mark.parametrize("module", MODULES_WITHOUT_TORCH)
def test_module_imports_no_torch(module):
    code = (
        "import importlib, sys\n"
        f"importlib.import_module({module!r})\n"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'megatron'))]\n"
        "assert not bad, bad[:5]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_all_simulator_and_tools_modules_import_no_torch():
    """Every module file under simulator/ and tools/ (discovered, not listed) stays torch-free."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import batchlaw.simulator as s, batchlaw.tools as t\n"
        "for pkg in (s, t):\n"
        "    for m in pkgutil.iter_modules(pkg.__path__):\n"
        "        if m.name != '__main__':\n"
        "            importlib.import_module(pkg.__name__ + '.' + m.name)\n"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'megatron'))]\n"
        "assert not bad, bad[:5]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


ROOT = Path(__file__).resolve().parents[1]
# package -> batchlaw packages (or single modules) it may import, as docs/architecture.md draws them
ALLOWED = {"simulator": ("batchlaw.simulator",),
           "plugin": ("batchlaw.simulator", "batchlaw.plugin"),
           "tools": ("batchlaw.simulator", "batchlaw.tools", "batchlaw.plugin.logschema", "batchlaw.plugin.launch",
                     "batchlaw.plugin.prelaunch", "batchlaw.plugin.lease", "batchlaw.plugin.ckptfiles")}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {n for n in names if n.startswith("batchlaw")}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_follow_the_documented_direction(package):
    ok = ALLOWED[package]
    bad = {}
    for path in sorted((ROOT / package).glob("*.py")):
        # "from batchlaw.plugin import logschema" names batchlaw.plugin and batchlaw.plugin.logschema: one allowed
        # name covering an imported one (or being covered by it) is enough
        wrong = [n for n in _imports(path) if not any(n == a or n.startswith(a + ".") or a.startswith(n + ".")
                                                       for a in ok)]
        if wrong:
            bad[path.name] = sorted(wrong)
    assert not bad, f"{package}/ imports against docs/architecture.md: {bad}"
