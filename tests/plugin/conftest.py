"""Helpers for tier (b) tests: launch the real trainer under torchrun (gloo, CPU) and read its log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "runs" / "tiny-cpu.toml"


def torchrun(nproc: int, workdir: Path, *overrides: str, timeout: int = 240, check: bool = True,
             popen: bool = False):
    """Run ``torchrun -m batchlaw.plugin.train configs/runs/tiny-cpu.toml --set ...`` in ``workdir``."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "batchlaw.plugin.train", str(TINY)]
    for o in overrides:
        cmd += ["--set", o]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    workdir.mkdir(parents=True, exist_ok=True)
    if popen:
        return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
    out = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"torchrun failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def read_log(path: Path) -> dict:
    """All /steps columns and the attributes of an HDF5 run log."""
    import h5py

    with h5py.File(path, "r", locking=False, swmr=True) as f:
        data = {k: v[:] for k, v in f["steps"].items()}
        data["attrs"] = dict(f.attrs)
        data["events"] = {g: {k: v[:] for k, v in grp.items()} for g, grp in f["events"].items()}
    return data


@pytest.fixture(scope="session")
def megatron():
    return pytest.importorskip("megatron.core")
