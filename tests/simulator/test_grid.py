"""Tier (a), pure: grid expansion, infeasibility reasons, dominance and budget pruning, the CLI."""

import numpy as np
import pytest

from batchlaw.simulator import config
from batchlaw.simulator.grid import GridConfig, _pareto, plan_rows, run_grid
from batchlaw.tools.cli import main


def _grid(**prune):
    return config.build(GridConfig, {"system": "h100-sxm", "grid": {
        "models": ["gpt-180m", "gpt-360m"], "global_batch": [48, 96, 240], "nodes": [3], "tp": [1, 2, 8],
        "pp": [1, 3]}, "prune": prune})


def test_expansion_and_reasons():
    t = run_grid(_grid())
    assert len(t["model"]) == 2 * 3 * 3 * 2  # the Cartesian product
    reasons = set(t["pruned_by"])
    assert any("heads 12 not divisible by tp 8" in r for r in reasons)
    assert any("layers 14 not divisible by pp x vpp = 3" in r for r in reasons)
    # survivors first; every survivor is feasible and fastest (within 5%) for its model and batch
    s = t["survives"]
    assert s[: s.sum()].all() and not s[s.sum():].any()
    for i in np.flatnonzero(s):
        same = (t["model"] == t["model"][i]) & (t["global_batch"] == t["global_batch"][i]) & t["feasible"]
        assert t["pred_iter_time_s"][i] <= t["pred_iter_time_s"][same].min() * 1.05


def test_budget_pruning_and_whole_run_time():
    t = run_grid(_grid(max_gpu_hours_per_run=1e-9))
    assert not t["survives"].any() and "over budget: gpu_hours" in set(t["pruned_by"])
    i = np.flatnonzero(t["feasible"])[0]
    steps = np.ceil(np.ceil(t["tokens"][i] / 2048) / t["global_batch"][i])
    assert t["gpu_hours"][i] == pytest.approx(steps * t["pred_iter_time_s"][i] / 3600 * t["gpus"][i])


def test_ramp_changes_run_time():
    g = _grid()
    ramped = config.build(GridConfig, {**config.to_dict(g), "grid": {**config.to_dict(g.grid), "ramp": ["48,48,2000000"]}})
    a, b = run_grid(g), run_grid(ramped)
    key = lambda t: {(m, gb, tp, pp): h for m, gb, tp, pp, h, ok in zip(t["model"], t["global_batch"], t["tp"], t["pp"],
                                                                      t["run_hours"], t["feasible"]) if ok}
    ka, kb = key(a), key(b)
    # smaller batches early in the run take more, less efficient steps: the ramped run is longer
    changed = [k for k in ka if k in kb and k[1] > 48]
    assert changed and all(kb[k] > ka[k] for k in changed)
    assert all(kb[k] == ka[k] for k in ka if k in kb and k[1] == 48)
    # the chosen micro batch suits the ramp: every ramped survivor's micro_batch x dp divides its start
    assert all(48 % (mb * dp) == 0 for mb, dp, ok in zip(b["micro_batch"], b["dp"], b["survives"]) if ok)
    odd = config.build(GridConfig, {**config.to_dict(g), "grid": {**config.to_dict(g.grid), "ramp": ["36,36,2000"]}})
    assert any(r.startswith("infeasible: ramp: ") for r in run_grid(odd)["pruned_by"])  # reasons, not crashes


def test_unknown_grid_key_and_cli(tmp_path, capsys):
    bad = tmp_path / "g.toml"
    bad.write_text('[grid]\nmodels = ["gpt-180m"]\nglobal_batch = [64]\nnode = [2]\n')
    assert main(["simulate", str(bad)]) == 2
    assert "grid.node: unknown key; valid keys are" in capsys.readouterr().err
    out = tmp_path / "o.csv"
    assert main(["simulate", "configs/grids/batch-sweep-180m-4b.toml", "--out", str(out), "--set", "grid.nodes=[4]"]) == 0
    text = out.read_text().splitlines()
    assert text[0].startswith("model,global_batch") and len(text) > 100
    assert out.with_suffix(".resolved.json").is_file()


def test_points_of_other_ramps_seeds_and_precisions_are_not_dominated_layouts():
    # a layout competes only with layouts of its own point (POINT_COLUMNS): a ramp forces a smaller
    # micro batch and fp32 prices differently, yet each is its own run of the study, as is seed 2
    g = config.build(GridConfig, {"system": "h100-sxm", "grid": {
        "models": ["gpt-180m"], "global_batch": [256], "nodes": [1], "tp": [1], "precision": ["bf16", "fp32"],
        "seed": [1, 2], "ramp": ["", "64,64,2000000"]}, "prune": {"pareto": True, "loss_law": "chinchilla"}})
    t = run_grid(g)
    assert len(t["model"]) == 8 and t["feasible"].all()
    assert t["survives"].all(), set(t["pruned_by"])
    assert len(plan_rows(t)) == 8
    # the Pareto front keeps exact ties and still drops what another point beats on loss and cost
    assert _pareto(np.array([1.0, 1.0, 1.0, 2.0]), np.array([5.0, 5.0, 6.0, 9.0])).tolist() == [True, True, False, False]
