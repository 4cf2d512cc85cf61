"""Tier (b), CPU: our staircase equals megatron-core's own RampupBatchsizeNumMicroBatchesCalculator.

Built directly (never through megatron's global singleton), over many random parameter sets.
"""

import random

import pytest

pytest.importorskip("megatron.core")

from megatron.core.num_microbatches_calculator import RampupBatchsizeNumMicroBatchesCalculator  # noqa: E402

from batchlaw.simulator.ramp import parse_ramp  # noqa: E402


def test_staircase_equals_megatron_016_calculator():
    rng = random.Random(0)
    for _ in range(200):
        gran = rng.choice([1, 2, 4, 8])
        incr = gran * rng.randint(1, 4)
        start = gran * rng.randint(1, 8)
        final = start + incr * rng.randint(1, 12)
        ramp_samples = rng.randint(0, 5000)
        ours = parse_ramp(f"{start},{incr},{ramp_samples}", global_batch=final, granularity=gran)
        ref = RampupBatchsizeNumMicroBatchesCalculator(
            global_batch_size=final, micro_batch_size=gran, data_parallel_size=1,
            decrease_batch_size_if_needed=False, rank=1, start_global_batch_size=start,
            batch_size_increment=incr, ramup_samples=ramp_samples)
        for consumed in sorted(rng.sample(range(0, ramp_samples + 50), 40)) + [ramp_samples, ramp_samples + 1]:
            ref.update(consumed, consistency_check=True)
            assert ours(consumed) == ref.get_current_global_batch_size(), (start, incr, ramp_samples, consumed)
            assert ref.get() == ours(consumed) // gran
