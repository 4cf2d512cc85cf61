"""Tier (a), pure: simulator/ and tools/ must never import torch or megatron (DESIGN.md rule 3)."""

import subprocess
import sys

import pytest

MODULES_WITHOUT_TORCH = [
    "batchlaw.simulator",
    "batchlaw.simulator.config",
    "batchlaw.simulator.spec",
    "batchlaw.tools",
    "batchlaw.tools.cli",
    "batchlaw.plugin.logschema",
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
