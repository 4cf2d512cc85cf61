"""Tier (a), pure: the study planner (simulator/design*.py, belief.py, study.py). Issue 19: the planner gives
every point its LR from a stated rule, sizes sweeps to bracket the optimum under the noise, extends what the
data left unbracketed, never plans a run twice, prices each run at its cheapest node count, and refuses in
one line a study it cannot answer (saying what it can buy)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from batchlaw.simulator.belief import model_of, observed_states, prior_states
from batchlaw.simulator.design import Model, fisher_var, lattice, lr_for, plan_wave
from batchlaw.simulator.noisemodel import NoiseModel
from batchlaw.simulator.study import load_study

SEED_STUDY = "batch-sweep-180m-4b"


def _price(model: str, batch: int) -> float:
    """GPU-hours of a run without the grid (fast): proportional to 6 N D (Kaplan et al. 2020, eq. 2.1)."""
    n = {"gpt-180m": 1.8e8, "gpt-360m": 3.6e8, "gpt-830m": 8.3e8, "gpt-1.4b": 1.4e9, "gpt-2.8b": 2.8e9,
         "gpt-4b": 3.9e9}[model]
    return 6 * n * 50 * n / (0.4 * 989e12) / 3600


def test_a_study_it_cannot_answer_is_refused_in_one_line(tmp_path):
    bad = {"sizes.models=['gpt-180m']": "a size law needs at least 3 model sizes",
           "lr.law=''": "rule = 'law' names no law",
           "target.exponent_half_width=0": "give exponent_half_width",
           "design.spacing=1": "design.spacing = 1",
           "sizes.models=['gpt-180m','gpt-180m','gpt-4b']": "listed twice",
           "design.first_seed=-3": "design.first_seed = -3"}
    for override, words in bad.items():
        with pytest.raises(ValueError) as exc:
            load_study(SEED_STUDY, [override])
        assert words in str(exc.value) and "\n" not in str(exc.value), override
    with pytest.raises(ValueError, match="unknown key"):
        load_study(SEED_STUDY, ["prior.b_opt_sdd=1"])


def test_first_seed_sets_every_configurations_first_training_seed():
    for sets, first in (([], 1234), (["design.first_seed=77"], 77)):  # 1234: the shipped study's base run
        study = load_study(SEED_STUDY, ["budget_gpu_hours=0", "design.simulations=8", *sets])
        basin, m = model_of(study)
        wave = plan_wave(study, prior_states(study, basin), m, _price)
        by_config = {}
        for p in wave.points:
            by_config.setdefault((p.model, p.batch, p.lr), []).append(p.seed)
        assert by_config and all(sorted(v) == list(range(first, first + len(v))) for v in by_config.values())


def test_information_shrinks_with_seeds_and_a_one_sided_sweep_locates_nothing():
    x = np.log([64, 128, 256, 512, 1024])
    one = fisher_var(x, np.full(5, 1 / 0.004**2), math.log(256), 0.014, 0.8)
    two = fisher_var(x, np.full(5, 2 / 0.004**2), math.log(256), 0.014, 0.8)
    assert two == pytest.approx(one / 2)
    assert fisher_var(x[:2], np.ones(2), 0.0, 0.014, 1.0) == math.inf
    assert lattice(math.log(100), 2.0, math.log(20), math.log(500)) == [12, 24, 48, 96, 192, 384, 768]  # covers


def test_first_wave_centres_each_size_on_the_prior_with_the_rule_lr():
    study = load_study(SEED_STUDY, ["budget_gpu_hours=0", "design.simulations=8"])
    basin, m = model_of(study)
    states = prior_states(study, basin)
    wave = plan_wave(study, states, m, _price)
    assert wave.points and not any(p.why != "initial sweep" for p in wave.points if p.why.startswith("extend"))
    for s in wave.sizes:
        pts = [p for p in wave.points if p.model == s.model]
        b = np.log([p.batch for p in pts])
        assert b.min() < s.ln_b < b.max()  # the prior centre lies inside the sweep
        # Step Law's lr_opt(N, D) = 1.797 N^-0.713 D^0.307 (configs/laws/steplaw-lr.toml), N non-embedding
        want = 1.797 * s.non_embedding**-0.7129 * s.tokens**0.3075
        assert all(p.lr == pytest.approx(want, rel=5e-3) for p in pts)  # written to 3 significant digits
    # a budget it cannot buy: one line with what it can buy
    with pytest.raises(ValueError) as exc:
        plan_wave(replace(study, budget_gpu_hours=50.0), states, m, _price)
    msg = str(exc.value)
    want = f"target.exponent_half_width = {study.target.exponent_half_width:g}: the budget of 50 GPU-hours buys"
    assert msg.startswith(want) and "\n" not in msg


def _runs(states, batches_of, loss_of, seed=1234, lr_of=None):
    out = []
    for s in states:
        for b in batches_of(s):
            lr = lr_of(s, b) if lr_of else s.lr_ref
            out.append({"model": s.model, "batch": b, "lr": float(f"{lr:.3g}"), "seed": seed, "loss": loss_of(s, b),
                        "se": 0.0})
    return out


def test_next_wave_extends_an_edge_and_never_plans_a_run_twice():
    study = load_study(SEED_STUDY, ["budget_gpu_hours=0", "design.simulations=8"])
    basin, m = model_of(study)
    states = prior_states(study, basin)
    # every size's loss falls to the smallest batch tried: the optimum lies below each sweep
    runs = _runs(states, lambda s: [int(round(math.exp(s.ln_b))) * k for k in (1, 2, 4, 8)],
                 lambda s, b: 2.5 + 0.01 * math.log(b))
    after, noise, optima = observed_states(study, basin, m, runs, bootstrap=50)
    assert all(s.status == "<=" for s in after)
    wave = plan_wave(study, after, replace(m, noise=noise), _price)
    done = {(r["model"], r["batch"], r["lr"], r["seed"]) for r in runs}
    planned = {(p.model, p.batch, p.lr, p.seed) for p in wave.points}
    assert not done & planned  # runs already done are never planned again
    for s in after:
        lowest = min(r["batch"] for r in runs if r["model"] == s.model)
        below = [p for p in wave.points if p.model == s.model and p.why.startswith("extend below")]
        assert below and all(p.batch < lowest for p in below)


def test_a_bracketed_size_gets_an_lr_sweep_and_the_sweep_corrects_the_rule():
    """A world whose LR optimum is 2x the rule's: the LR sweep at the batch nearest the optimum finds it, and the
    size's later points take the corrected LR (lr_scale)."""
    study = load_study(SEED_STUDY, ["budget_gpu_hours=0", "design.simulations=8"])
    basin, m = model_of(study)
    states = prior_states(study, basin)
    m = replace(m, noise=NoiseModel(seed_sd=1e-4, prior_dof=1e4))

    def loss(s, b, lr):
        cell = basin.at(s.non_embedding, s.tokens)
        return 2.5 + float(cell.excess(math.log(b / math.exp(s.ln_b)), math.log(lr / (2 * s.lr_ref))))

    runs = []
    for s in states:
        for k in (-2, -1, 0, 1, 2):
            b = int(round(math.exp(s.ln_b) * 2**k))
            runs.append({"model": s.model, "batch": b, "lr": s.lr_ref, "seed": 1234, "loss": loss(s, b, s.lr_ref),
                         "se": 0.0})
    after, noise, _ = observed_states(study, basin, m, runs, bootstrap=50)
    assert all(s.status == "bracketed" and not s.lr_tested for s in after)
    wave = plan_wave(study, after, replace(m, noise=noise), _price)
    sweeps = [p for p in wave.points if p.why.startswith("LR sweep")]
    assert {p.model for p in sweeps} == {s.model for s in after}
    for p in sweeps:  # run them, and the rule is corrected toward the world's 2x
        s = next(s for s in after if s.model == p.model)
        runs.append({"model": p.model, "batch": p.batch, "lr": p.lr, "seed": p.seed, "loss": loss(s, p.batch, p.lr),
                     "se": 0.0})
    final, _, _ = observed_states(study, basin, m, runs, bootstrap=50)
    for s in final:
        assert s.lr_tested and 1.5 < s.lr_scale < 2.7, (s.model, s.lr_scale)
        assert lr_for(study, s, 512) == pytest.approx(s.lr_ref * s.lr_scale)


def test_each_run_is_priced_at_its_cheapest_node_count():
    """The seed grid fixed 8 nodes: gpt-180m at batch 64 cost 40 GPU-hours there (issue 19)."""
    from batchlaw.simulator.design_price import price
    from batchlaw.simulator.grid import load_grid, run_grid

    study = load_study(SEED_STUDY)
    row = price(study, [("gpt-180m", 64)])[("gpt-180m", 64)]
    g = load_grid(SEED_STUDY, ["grid.models=['gpt-180m']", "grid.global_batch=[64]"])
    t = run_grid(g)
    eight = float(np.min(t["gpu_hours"][np.asarray(t["survives"], bool)]))
    assert row["nodes"] < 8 and row["gpu_hours"] < 0.5 * eight and row["run_hours"] <= study.max_wall_hours
