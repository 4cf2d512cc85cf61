"""Tier (a), pure: the design's belief can be built for sizes that have no model config (belief.observed_states
with ``prior``), as the replay of Step Law's published (N, D) cells in benchmarks/bench_design.py needs."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from batchlaw.simulator.belief import model_of, observed_states
from batchlaw.simulator.design import SizeState
from batchlaw.simulator.study import load_study


def test_observed_states_of_cells_given_as_prior_states():
    """A cell of N = 214,663,680 (non-embedding) on 100B tokens, swept at 7 batches around a true optimum of 700
    sequences: its state comes back bracketed near 700 and no study model is looked up."""
    study = load_study("batch-sweep-180m-4b", ["base=''", "compare_grid=''"])
    basin, m = model_of(study)
    n, d = 214663680.0, 1e11
    cell = basin.at(n, d)
    s0 = SizeState(model="cell-214M-100B", num_params=int(n), non_embedding=n, tokens=d, seq_len=2048,
                   ln_b=math.log(500.0), ln_b_sd=0.7, lr_ref=2e-3, a=cell.a_below, c=cell.c_below)
    b = 700.0 * 2.0 ** np.arange(-3, 4)
    u = np.log(b / 700.0)
    loss = 2.3 + cell.a_below * u * u
    runs = [{"model": s0.model, "batch": int(round(x)), "lr": 2e-3, "seed": 1, "loss": float(y), "se": 1e-4}
            for x, y in zip(b, loss)]
    states, _, optima = observed_states(study, basin, m, runs, bootstrap=50, prior=[s0])
    assert [s.model for s in states] == ["cell-214M-100B"]
    assert states[0].status == "bracketed" and abs(math.log(optima[s0.model].b / 700.0)) < 0.1
    untouched, _, none = observed_states(study, basin, m, [], prior=[replace(s0, model="other")])
    assert untouched[0].status == "prior" and none == {}
