"""Tier (b), CPU + gloo + real megatron-core (world size 1): gradient norm without clipping, fp16 loss
scaling, fp16 overflow, a non-finite loss and non-finite gradients.

- ``train.clip_grad = 0`` logs the same gradient norm and noise-scale columns as a threshold that
  never clips (it logged 0 before: the norm was read before the optimizer had prepared the grads).
- fp16 on CPU trains like fp32: over 10 steps the losses agree to 1e-3 relative and the gradient
  norms to 1e-2 (fp16 has an 11-bit mantissa; the measured gap is about 3e-5 and 2e-3). Before the
  fix the loss was never scaled and training did not move.
- fp16 overflow (initial loss scale 1.7e7): the step is skipped and logged with ``skipped = 1``,
  NaN gradient norm and noise-scale columns; the scale halves after megatron's hysteresis of 2
  overflows, later steps apply, and the run completes.
- A non-finite loss (lr 1e30) stops the run with status ``failed``, exit status 1, and a checkpoint
  of the last state before the failed step; so do non-finite fp32/bf16 gradients with a finite loss
  (an inf injected into the reduced gradients by ``nangrad_driver.py``), which megatron would apply.
"""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import read_log, torchrun

pytestmark = pytest.mark.dist

STEPS = ("train.steps=10", "log.path=log.h5", "checkpoint.dir=", "train.precision=fp32")


@pytest.fixture(scope="module")
def fp32_ref(megatron, tmp_path_factory):
    d = tmp_path_factory.mktemp("fp32")
    torchrun(1, d, *STEPS, "train.clip_grad=1e6")  # a threshold far above every norm: never clips
    return read_log(d / "log.h5")


def test_clip_zero_logs_the_true_norm(fp32_ref, tmp_path):
    torchrun(1, tmp_path, *STEPS, "train.clip_grad=0")
    log = read_log(tmp_path / "log.h5")
    assert np.all(fp32_ref["grad_norm"] > 0.1)
    for col in ("loss", "grad_norm", "gns_big_sq", "gns_small_sq", "gns_g2", "gns_trace"):
        np.testing.assert_allclose(log[col], fp32_ref[col], rtol=1e-6, err_msg=col)
    np.testing.assert_allclose(log["gns_big_sq"], log["grad_norm"] ** 2, rtol=1e-12)


def test_fp16_trains_like_fp32(fp32_ref, tmp_path):
    torchrun(1, tmp_path, *STEPS, "train.clip_grad=1e6", "train.precision=fp16")
    log = read_log(tmp_path / "log.h5")
    assert fp32_ref["loss"][-1] < fp32_ref["loss"][0] - 0.5  # the reference learns
    np.testing.assert_allclose(log["loss"], fp32_ref["loss"], rtol=1e-3)
    np.testing.assert_allclose(log["grad_norm"], fp32_ref["grad_norm"], rtol=1e-2)
    assert np.all(log["skipped"] == 0) and np.all(log["loss_scale"] == 65536.0)
    kernels = json_kernels(log)  # the kernels used are recorded: apex's fused Adam only where apex is installed
    assert kernels["adam"].startswith("apex." if kernels["apex"] == "True" else "torch.optim."), kernels


def json_kernels(log: dict) -> dict:
    import json

    return json.loads(log["attrs"]["kernels"])


def test_fp16_overflow_skips_the_step_and_goes_on(megatron, tmp_path):
    torchrun(1, tmp_path, *STEPS[:-1], "train.precision=fp16", "train.loss_scale_init=1.7e7")
    log = read_log(tmp_path / "log.h5")
    skipped = log["skipped"] == 1
    assert log["attrs"]["status"] == "completed" and list(log["step"]) == list(range(1, 11))
    assert skipped[0] and skipped[1] and not skipped.all()
    for col in ("grad_norm", "gns_big_sq", "gns_small_sq", "gns_g2", "gns_trace"):
        assert np.all(np.isnan(log[col][skipped])), col
        assert np.all(np.isfinite(log[col][~skipped])), col
    assert np.all(np.isfinite(log["loss"]))
    # megatron's DynamicGradScaler: the scale halves on the second consecutive overflow (hysteresis 2)
    assert log["loss_scale"][0] == log["loss_scale"][1] == 1.7e7 and log["loss_scale"][2] == 8.5e6
    assert np.all(np.diff(log["loss_scale"]) <= 0)
    assert log["loss"][-1] < log["loss"][0]  # applied steps train


def test_nonfinite_loss_fails_with_a_checkpoint_before_it(megatron, tmp_path):
    out = torchrun(1, tmp_path, "train.steps=10", "log.path=log.h5", "checkpoint.dir=ckpt", "train.lr=1e30",
                   check=False)
    assert out.returncode != 0
    log = read_log(tmp_path / "log.h5")
    assert log["attrs"]["status"] == "failed"
    last = int(log["step"][-1])
    # the blow-up shows first in the loss (megatron-core 0.16) or in the gradients (0.19); either stops the run
    assert log["skipped"][-1] == 1 and np.all(np.isfinite(log["loss"][:-1]))
    assert not np.isfinite(log["loss"][-1]) or np.isnan(log["grad_norm"][-1])
    saved = sorted(p.name for p in (tmp_path / "ckpt").glob("step_*"))
    assert saved == [f"step_{last - 1:08d}"]
    assert f"step {last}: loss nan is not finite" in out.stderr + out.stdout or \
        f"step {last}: gradients are not finite" in out.stderr + out.stdout


def test_nonfinite_grads_with_a_finite_loss_fail_with_a_checkpoint_before_them(megatron, tmp_path):
    # fp32 has no loss scaler to catch an inf gradient: megatron's step would clip with a NaN norm and
    # write NaN weights (the next loss NaN, and the checkpoint written then holds NaN weights). The trainer
    # checks the gradient buffers first and stops as for a non-finite loss, with the last good state
    # checkpointed. tests/plugin/nangrad_driver.py puts an inf into the reduced gradients of step 3.
    import subprocess
    import sys
    from pathlib import Path

    from .conftest import REPO, TINY

    args = [str(TINY), "--set", "train.steps=6", "--set", "log.path=log.h5", "--set", "checkpoint.dir=ckpt",
            "--set", "train.precision=fp32", "--set", "log.stdout_every=0"]
    out = subprocess.run([sys.executable, str(Path(__file__).with_name("nangrad_driver.py")), str(tmp_path), "3",
                          "--", *args], capture_output=True, text=True, timeout=300, cwd=REPO,
                         env={"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 1, out.stderr[-3000:]
    log = read_log(tmp_path / "log.h5")
    assert log["attrs"]["status"] == "failed" and list(log["step"]) == [1, 2, 3]
    assert list(log["skipped"]) == [0, 0, 1] and np.isnan(log["grad_norm"][2])
    assert np.all(np.isfinite(log["loss"]))
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("step_*")) == ["step_00000002"]
    assert "step 3: gradients are not finite; checkpointing step 2" in out.stderr + out.stdout
