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
- Non-finite gradients (an inf injected into the reduced gradients by ``nangrad_driver.py``) never
  update the weights in fp32, bf16 or fp16: the step is logged with ``skipped = 1`` and training goes
  on; ``MAX_SKIPS_IN_A_ROW`` skipped steps in a row stop the run as failed (exit 1) without a new
  checkpoint, so the last good one stays the one a resume picks. A blown-up run (lr 1e30: non-finite
  losses) ends the same way and no longer checkpoints its poisoned state.
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


def test_a_blown_up_run_skips_then_fails_without_checkpointing_the_poisoned_state(megatron, tmp_path):
    # lr 1e30: step 1's update makes the weights huge, the following losses (megatron-core 0.16) or
    # gradients (0.19) are not finite. Issue 21: the run checkpointed that poisoned state as its latest
    # and stopped at once; now every such step is skipped, the run stops as failed after
    # MAX_SKIPS_IN_A_ROW of them, and writes no checkpoint (with checkpoint.every = 0 there is none).
    from batchlaw.plugin.loop import MAX_SKIPS_IN_A_ROW

    out = torchrun(1, tmp_path, "train.steps=40", "log.path=log.h5", "checkpoint.dir=ckpt", "train.lr=1e30",
                   "log.stdout_every=0", check=False)
    assert out.returncode != 0
    log = read_log(tmp_path / "log.h5")
    last = 1 + MAX_SKIPS_IN_A_ROW
    assert log["attrs"]["status"] == "failed" and list(log["step"]) == list(range(1, last + 1))
    assert list(log["skipped"]) == [0] + [1] * MAX_SKIPS_IN_A_ROW and np.isfinite(log["loss"][0])
    assert np.all(np.isnan(log["grad_norm"][1:]))
    assert not list((tmp_path / "ckpt").glob("step_*"))
    assert f"step {last}: {MAX_SKIPS_IN_A_ROW} steps in a row skipped" in out.stderr + out.stdout


def _nangrad(tmp_path, poison: str, *sets: str):
    import subprocess
    import sys
    from pathlib import Path

    from .conftest import REPO, TINY

    args = [str(TINY), "--set", "log.path=log.h5", "--set", "checkpoint.dir=ckpt", "--set", "log.stdout_every=0"]
    for item in sets:
        args += ["--set", item]
    out = subprocess.run([sys.executable, str(Path(__file__).with_name("nangrad_driver.py")), str(tmp_path), poison,
                          "--", *args], capture_output=True, text=True, timeout=300, cwd=REPO,
                         env={"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PATH": "/usr/bin:/bin"})
    params = dict(line.split() for line in (tmp_path / "params.txt").read_text().splitlines())
    return out, read_log(tmp_path / "log.h5"), params


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_a_nonfinite_gradient_never_updates_the_weights(megatron, tmp_path, precision):
    # Issue 21: in fp32/bf16 no loss scaler checks the gradients, and megatron would clip with a NaN
    # norm and write NaN weights. Each precision now skips the update of a step whose gradients hold an
    # inf (fp16 through megatron's scaler, which also lowers the scale), logs it with skipped = 1, and
    # trains on: the weights after step 3 are those after step 2, and the later steps change them.
    out, log, params = _nangrad(tmp_path, "3", "train.steps=6", f"train.precision={precision}",
                                "checkpoint.every=1")
    assert out.returncode == 0, out.stderr[-3000:]
    assert log["attrs"]["status"] == "completed" and list(log["step"]) == [1, 2, 3, 4, 5, 6]
    assert list(log["skipped"]) == [0, 0, 1, 0, 0, 0] and np.isnan(log["grad_norm"][2])
    assert np.all(np.isfinite(log["loss"])) and np.all(np.isfinite(np.delete(log["grad_norm"], 2)))
    assert params["3"] == params["2"] and len({params[str(k)] for k in (2, 4, 5, 6)}) == 4
    if precision == "fp16":
        assert log["loss_scale"][3] <= log["loss_scale"][2]
    else:
        assert "step 3: loss" in out.stderr and "update skipped (1 in a row" in out.stderr


def test_consecutive_skips_stop_the_run_and_the_last_good_checkpoint_stays(megatron, tmp_path):
    from batchlaw.plugin.checkpoint import latest_checkpoint
    from batchlaw.plugin.loop import MAX_SKIPS_IN_A_ROW

    out, log, params = _nangrad(tmp_path, "3-", "train.steps=60", "train.precision=fp32", "checkpoint.every=1",
                                "checkpoint.keep=2")
    last = 2 + MAX_SKIPS_IN_A_ROW
    assert out.returncode == 1, out.stderr[-3000:]
    assert log["attrs"]["status"] == "failed" and list(log["step"]) == list(range(1, last + 1))
    assert list(log["skipped"]) == [0, 0] + [1] * MAX_SKIPS_IN_A_ROW
    assert len({params[str(k)] for k in range(2, last + 1)}) == 1  # no skipped step touched the weights
    assert latest_checkpoint(tmp_path / "ckpt").name == "step_00000002"  # what a resume picks
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("step_*")) == ["step_00000001", "step_00000002"]
    assert f"step {last}: {MAX_SKIPS_IN_A_ROW} steps in a row skipped" in out.stderr
