"""Tier (a), pure: batch-size ramps (shapes, parsing, granularity, segments, LR rescale)."""

import pytest

from batchlaw.simulator.ramp import AdaptiveRamp, StaircaseRamp, lr_scale, num_steps, parse_count, segments
from batchlaw.simulator.rampspec import RampSpec


def parse_ramp(spec, **kw):
    """A ramp written in any accepted spelling, bound to one run's numbers."""
    return RampSpec.from_config(spec).bind(**kw)


def test_staircase_megatron_doc_example():
    # Megatron-LM arguments.py help for --rampup-batch-size: "--rampup-batch-size 16 16 5859375
    # --global-batch-size 1024 will start with global batch size 16 and over (1024 - 16) / 16 = 63
    # intervals will increase the batch size linearly to 1024. In each interval we will use
    # approximately 5859375 / 63 = 93006 samples."
    r = parse_ramp("16,16,5859375", global_batch=1024)
    assert r(0) == 16
    assert r(93005) == 16 and r(93006) == 32  # 5859375 / 63 = 93005.95 samples per stair
    assert r(5859375) == 16 + 63 * 16 == 1024
    assert r(10**9) == 1024


def test_step_schedule_suffixes_and_tokens():
    r = parse_ramp("0:768 250B:1536", global_batch=1536)  # samples
    assert r(0) == 768 and r(250 * 10**9 - 1) == 768 and r(250 * 10**9) == 1536
    t = parse_ramp({"shape": "steps", "schedule": "0:8 1K:16", "unit": "tokens"}, global_batch=16,
                   seq_len=100)
    assert t(9) == 8 and t(10) == 16  # 10 samples x 100 tokens = 1K tokens
    assert parse_count("1.5M") == 1_500_000


def test_granularity_and_monotone_errors():
    with pytest.raises(ValueError, match="ramp.start = 6: must be a positive multiple of micro_batch x dp = 4"):
        parse_ramp("6,4,100", global_batch=16, granularity=4)
    with pytest.raises(ValueError, match="must never decrease"):
        parse_ramp("0:16 10:8", global_batch=8)
    with pytest.raises(ValueError, match="train.ramp: a ramp table needs shape"):
        parse_ramp({"shpe": "x"}, global_batch=8)


@pytest.mark.parametrize("spec", [
    "8,8,1000",
    {"shape": "linear_tokens", "start": 8, "ramp_tokens": "64K"},
    {"shape": "doubling", "start": 8, "every_tokens": "20K"},
    "0:8 300:16 900:64",
])
def test_ramps_are_multiples_and_never_decrease(spec):
    r = parse_ramp(spec, global_batch=64, granularity=8, seq_len=64)
    prev = 0
    for c in range(0, 5000, 7):
        b = r(c)
        assert b % 8 == 0 and b >= prev and b <= 64
        prev = b


def test_segments_match_step_by_step_loop():
    r = parse_ramp("8,8,1000", global_batch=64, granularity=8)
    consumed, steps, seq = 0, 0, []
    while consumed < 12345:
        b = r(consumed)
        seq.append(b)
        consumed += b
        steps += 1
    segs = segments(r, 12345)
    assert num_steps(r, 12345) == steps
    assert [b for b, n, _ in segs for _ in range(n)] == seq


def test_adaptive_hysteresis_and_state():
    r = parse_ramp({"shape": "adaptive", "start": 8, "min_steps": 10}, global_batch=64, granularity=8)
    assert isinstance(r, AdaptiveRamp)
    assert r.observe(5, 1000.0) is None  # too early
    assert r.observe(10, 9.0) is None  # inside the hysteresis band (8 * 1.25 = 10)
    rec = r.observe(10, 11.0)
    assert rec == {"step": 10, "old_batch": 8, "new_batch": 16, "b_simple": 11.0}
    assert r(0) == 16
    state = r.state_dict()
    r2 = parse_ramp({"shape": "adaptive", "start": 8, "min_steps": 10}, global_batch=64, granularity=8)
    r2.load_state_dict(state)
    assert r2(123) == 16 and r2.observe(15, 1e9) is None


def test_lr_scale_rules():
    assert lr_scale(64, 16, "sqrt") == 2.0
    assert lr_scale(64, 16, "linear") == 4.0
    assert lr_scale(64, 16, "none") == 1.0
    with pytest.raises(ValueError, match="allowed are 'none', 'sqrt', 'linear'"):
        lr_scale(1, 1, "cubic")


def test_staircase_list_spelling():
    r = parse_ramp([4, 4, 100], global_batch=16, granularity=4)
    assert isinstance(r, StaircaseRamp) and (r.start, r.incr, r.ramp_samples) == (4, 4, 100)
