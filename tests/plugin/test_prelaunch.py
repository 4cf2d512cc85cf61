"""Tier (b), CPU + gloo, real megatron-core: the rank entry point runs the same pre-launch check as
``batchlaw train`` (plugin/prelaunch.py ``check_prelaunch``), so a config started without the
launcher (an sbatch script, torchrun by hand) is refused by the rank with one line and exit status
2 before any model is built, never with a traceback of ours (issue 13, "Validation"). The rank runs
as a one-process world here: torchrun adds its own ChildFailedError report to any non-zero exit."""

import os
import random
import subprocess
import sys

import pytest

from .conftest import TINY

pytest.importorskip("megatron.core")


@pytest.mark.dist
def test_rank_refuses_checkpoint_dir_that_is_a_file(tmp_path):
    (tmp_path / "ckpt").write_text("not a directory\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "RANK": "0", "LOCAL_RANK": "0",
           "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(random.randint(20000, 60000))}
    cmd = [sys.executable, "-m", "batchlaw.plugin.train", str(TINY), "--set", "checkpoint.dir=ckpt",
           "--set", "log.path=log.h5"]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    errors = [line for line in out.stderr.splitlines() if "batchlaw train: error:" in line]
    assert out.returncode == 2 and len(errors) == 1, out.stderr[-3000:]
    assert "checkpoint.dir = 'ckpt': exists and is not a directory" in errors[0]
    assert "Traceback" not in out.stderr and not (tmp_path / "log.h5").exists()
