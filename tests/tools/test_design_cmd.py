"""Tier (a), pure (the design command; no training): issue 19's done-when for ``batchlaw design``: it plans the
shipped study, ``submit --dry-run`` prints the same plan line for the plan it wrote, the shipped seed grid warns
that its fixed LR biases B_opt while the shipped study gives every point its law's LR, and bad input is one line."""

from __future__ import annotations

import math

import numpy as np

from batchlaw.tools.cli import main

FAST = ["--set", "design.simulations=8", "--set", "budget_gpu_hours=0"]  # a few simulations: no budget refusal


def _plan_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("plan: "))


def test_design_then_submit_launches_exactly_what_design_printed(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["design", "batch-sweep-180m-4b", "--out", "wave1.csv", *FAST]) == 0
    out = capsys.readouterr().out
    designed = _plan_line(out)
    assert "naive full grid 'batch-sweep-180m-4b': 42 runs" in out and "its LRs bias B_opt by" in out
    assert main(["submit", "wave1.csv", "--time", "72:00:00", "--dry-run", "--runs-dir", "runs"]) == 0
    assert _plan_line(capsys.readouterr().out) == designed
    from batchlaw.simulator.plan import read_plan

    table, doc = read_plan(tmp_path / "wave1.csv")
    assert doc["predicted"]["sizes"] and doc["base_config"]["train"]["tokens"]
    # every point at Step Law's lr_opt(N, D) for its size (no fixed-LR bias), at its cheapest node count
    from batchlaw.simulator.belief import non_embedding_params
    from batchlaw.simulator.params import num_params
    from batchlaw.simulator.spec import load_model

    for i in range(len(table["model"])):
        shape = load_model(str(table["model"][i]))
        n, d = non_embedding_params(shape), num_params(shape) * 50
        assert math.isclose(float(table["lr"][i]), 1.797 * n**-0.7129 * d**0.3075, rel_tol=5e-3)
    assert int(np.min(table["nodes"])) < 8  # the seed grid fixed 8 nodes for every point


def test_the_seed_grid_warns_that_its_fixed_lr_biases_b_opt(capsys):
    assert main(["simulate", "batch-sweep-180m-4b", "--set", "grid.models=['gpt-180m']"]) == 0
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "gpt-180m" in x)
    assert line.startswith("batchlaw: warning: grid.lr = 0.0003 for gpt-180m is 13.7x below steplaw-lr's lr_opt")
    assert "the B_opt measured at this fixed LR is x0.30" in line
    assert main(["simulate", "batch-sweep-180m-4b", "--set", "grid.models=['gpt-180m']",
                 "--set", "lr_fixed_on_purpose=true"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_next_wave_from_an_empty_folder_is_the_first_and_bad_input_is_one_line(tmp_path, capsys):
    (tmp_path / "logs").mkdir()
    assert main(["design", "demo", "--next", str(tmp_path / "logs"), *FAST]) == 0
    assert "the first wave: no runs yet" in capsys.readouterr().out
    for args, words in ((["--set", "sizes.models=['demo-s']"], "a size law needs at least 3 model sizes"),
                        (["--set", "lr.rule=law", "--set", "lr.law=''"], "names no law"),
                        (["--set", "budget_gpu_hours=1e-6"], "the budget of 0 GPU-hours buys")):
        assert main(["design", "demo", *FAST, *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("batchlaw: error:") and words in err and "\n" not in err, (args, err)
