"""Tier (a), pure: when the design says its target is met (design.target_met).

Issue 19's replay of Step Law's dense runs (benchmarks/bench_design.py, part 2) with DeepSeek's lr_opt law, which
sits 2-3x below those cells' optimal LR: the design bracketed each cell along that LR in one wave, its 80% B_opt
interval met the target (x/1.25), it stopped, and its B_opt lay inside the full grid's near-optimal band in 7 of
17 cells, below it in the rest (a fixed LR below the optimum biases B_opt low: Li et al. 2025). The interval of a
sweep along one LR is the optimum given that LR; the rule's error is only measured by the LR sweep the planner
puts at a bracketed size, so a target is not met before it.
"""

from __future__ import annotations

import math

from batchlaw.simulator.design import SizeState, target_met
from batchlaw.simulator.optimum import Optimum
from batchlaw.simulator.study import load_study

SIZES = (("gpt-180m", 1.8e8, 120.0), ("gpt-830m", 8.3e8, 300.0), ("gpt-4b", 3.9e9, 800.0))


def _answered(tested: bool):
    states, optima = [], {}
    for name, n, b in SIZES:
        states.append(SizeState(model=name, num_params=int(n), non_embedding=n, tokens=50 * n, seq_len=2048,
                                ln_b=math.log(b), ln_b_sd=0.02, status="bracketed", lr_ref=1e-3, lr_tested=tested))
        optima[name] = Optimum(b=b, lo=b / 1.05, hi=b * 1.05, bracketed=True, bound="", method="test")
    return states, optima


def test_a_target_along_an_untested_lr_rule_is_not_met():
    study = load_study("batch-sweep-180m-4b", ["target.exponent_half_width=0", "target.b_opt_factor=1.25"])
    met, why = target_met(study, *_answered(tested=False))
    assert not met and "LR sweep" in why and "gpt-4b" in why
    assert target_met(study, *_answered(tested=True))[0]


def test_a_fixed_lr_or_no_lr_sweep_keeps_the_old_rule():
    """With the LR fixed (on purpose) or no LR sweep allowed, nothing can test the rule: the intervals decide."""
    fixed = load_study("batch-sweep-180m-4b", ["target.exponent_half_width=0", "target.b_opt_factor=1.25",
                                               "lr.rule='fixed'", "lr.value=3e-4", "lr.on_purpose=true"])
    assert target_met(fixed, *_answered(tested=False))[0]
    none = load_study("batch-sweep-180m-4b", ["target.exponent_half_width=0", "target.b_opt_factor=1.25",
                                              "lr.sweep_factors=[]"])
    assert target_met(none, *_answered(tested=False))[0]

