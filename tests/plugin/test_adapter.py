"""Tier (b) CPU + gloo + real megatron-core: ``plugin/_mcore.py`` is the adapter (the AST checks that
nothing else imports megatron or names its internals are in ``tests/test_mcore_boundary.py``).

- A renamed megatron internal (``DistributedDataParallel.bucket_groups``, which the noise-scale hook
  wraps) stops the trainer with an error naming the megatron-core version, never silent NaN or zero.
- batchlaw's staircase equals megatron-core's own calculator, built with this version's API
  (``rampup_batch_size`` up to 0.17, ``step_batch_size_schedule`` from 0.18), over random parameters.
"""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap

import pytest

from .conftest import REPO

RENAME = textwrap.dedent("""
    import sys
    from batchlaw.plugin.cpu import apply_cpu_patches
    apply_cpu_patches()
    from megatron.core.distributed import DistributedDataParallel as DDP
    original = DDP.__init__
    def renamed(self, *a, **k):  # what a release renaming the attribute would look like
        original(self, *a, **k)
        self.bucket_groups_renamed = self.__dict__.pop("bucket_groups")
    DDP.__init__ = renamed
    from batchlaw.plugin.train import main
    sys.exit(main(sys.argv[1:]))
""")


def test_renamed_internal_fails_loudly_naming_the_version(megatron, tmp_path):
    script = tmp_path / "renamed.py"
    script.write_text(RENAME)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           str(REPO / "configs" / "runs" / "tiny-cpu.toml"), "--set", "train.steps=2", "--set", "log.path=log.h5",
           "--set", "checkpoint.dir="]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=240,
                         env={"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PATH": "/usr/bin:/bin"})
    text = out.stdout + out.stderr
    assert out.returncode != 0
    from importlib.metadata import version

    assert f"megatron-core {version('megatron-core')}: DistributedDataParallel.bucket_groups" in text, text[-3000:]
    assert "MegatronInternalMissing" in text and not (tmp_path / "log.h5").exists()


def test_staircase_equals_megatrons_calculator_in_this_version(megatron):
    from batchlaw.plugin import _mcore
    from batchlaw.simulator.rampspec import RampSpec

    api = "step_batch_size_schedule" if _mcore.version_tuple() >= (0, 18) else "rampup_batch_size"
    rng = random.Random(0)
    for _ in range(100):
        mb, dp = rng.choice([1, 2]), rng.choice([1, 2, 4])
        gran = mb * dp
        incr = gran * rng.randint(1, 4)
        start = gran * rng.randint(1, 8)
        final = start + incr * rng.randint(1, 12)
        ramp_samples = rng.randint(0, 3000)
        ours = RampSpec.from_config(f"{start},{incr},{ramp_samples}").bind(global_batch=final, granularity=gran)
        max_samples = ramp_samples + 4 * final
        assert set(_mcore.megatron_ramp_kwargs(ours, max_samples)) == {api}
        ref = _mcore.megatron_batch_calculator(ours, global_batch=final, micro_batch=mb, dp=dp,
                                               max_samples=max_samples)
        consumed = 0
        while consumed < max_samples:  # walk the run as a trainer does, step by step
            assert ours(consumed) == ref(consumed), (start, incr, ramp_samples, consumed, api)
            consumed += ours(consumed)


def test_version_switch():
    pytest.importorskip("megatron.core")
    from batchlaw.plugin import _mcore
    from batchlaw.simulator.rampspec import RampSpec

    assert _mcore.version_tuple("0.16.1") == (0, 16) and _mcore.version_tuple("0.19.2rc1") == (0, 19)
    assert _mcore.version_tuple() == tuple(int(x) for x in _mcore.VERSION.split(".")[:2])
    ramp = RampSpec.from_config("4,4,8").bind(global_batch=16, granularity=4)
    kwargs = _mcore.megatron_ramp_kwargs(ramp, max_samples=64)
    if _mcore.version_tuple() >= (0, 18):
        assert kwargs == {"step_batch_size_schedule": "0:4 4:8 12:16"}  # the stairs the run takes (12 is stepped over)
    else:
        assert kwargs == {"rampup_batch_size": [4, 4, 8]}
