"""Tier (b), CPU + real megatron-core, in process (no process group): the LR schedule counted in
samples (the version switch is in test_adapter.py; the sequence-parallel refusal on CPU in
test_prelaunch_checks.py)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from batchlaw.plugin.optim import LrSchedule  # noqa: E402


def test_warmup_and_cosine_in_samples():
    s = LrSchedule(peak_lr=1.0, min_lr=0.1, warmup_samples=100, decay="cosine", total_samples=1100)
    # linear warmup reaches the peak at the end of warmup (Goyal et al. 2017, sec. 2.2)
    assert s(0, 10) == pytest.approx(0.1) and s(90, 10) == pytest.approx(1.0)
    assert s(95, 10) == pytest.approx(1.0)  # never above the peak when a batch straddles the end
    # cosine (Loshchilov & Hutter 2017, eq. 5): peak at f = 0, midpoint at f = 1/2, min at f = 1
    assert s(100, 10) == pytest.approx(1.0)
    assert s(600, 10) == pytest.approx(0.1 + 0.9 * 0.5)
    assert s(1100, 10) == pytest.approx(0.1) and s(5000, 10) == pytest.approx(0.1)
    lin = LrSchedule(peak_lr=1.0, min_lr=0.0, warmup_samples=0, decay="linear", total_samples=1000)
    assert lin(250, 8) == pytest.approx(0.75)


def test_schedule_depends_on_samples_not_steps():
    # Under a ramp the same sample count is reached after different step counts; the LR must agree.
    s = LrSchedule(peak_lr=3e-3, min_lr=3e-4, warmup_samples=64, total_samples=4096)
    small, big = [], []
    for batch, out in ((8, small), (32, big)):
        consumed = 0
        while consumed < 4096:
            out.append((consumed, s(consumed, batch)))
            consumed += batch
    at_small, at_big = dict(small), dict(big)
    for c in (512, 1024, 2048, 4064):
        assert at_small[c] == at_big[c]


def test_lr_rescaled_with_the_ramp_batch():
    s = LrSchedule(peak_lr=1.0, decay="constant", reference_batch=64, lr_scaling="sqrt")
    assert s(0, 16) == pytest.approx(0.5) and s(0, 64) == pytest.approx(1.0)
    assert LrSchedule(peak_lr=1.0, decay="constant", reference_batch=64, lr_scaling="linear")(0, 16) == 0.25


def test_bad_decay_is_a_value_error():
    with pytest.raises(ValueError, match="train.decay = 'exp'"):
        LrSchedule(peak_lr=1.0, decay="exp")
