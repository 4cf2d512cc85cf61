"""Tier (a), pure (no cluster, no torch): the plan -> submit handoff. A grid with a ramp,
overlap_grad_reduce, the distributed optimizer and a precision, simulated and then submitted with
--dry-run, yields one run per surviving point carrying every one of those values; simulate and
submit print the same run count and GPU-hours; the dry run writes nothing."""

import os
import tomllib
from pathlib import Path

import numpy as np
import pytest

from batchlaw.simulator.grid import POINT_COLUMNS, load_grid, plan_rows, run_grid
from batchlaw.simulator.rampspec import RampSpec
from batchlaw.tools.cli import main
from batchlaw.tools.submit import SubmitSettings, plan_runs, submit, write_runs

GRID = """
name = "handoff"
system = "h100-sxm"
gpus_per_node = 8
base = "tiny-cpu"

[grid]
models = ["gpt-180m", "gpt-360m"]
tokens_per_param = 1
global_batch = [128, 256]
nodes = [1]
tp = [1, 2]
pp = [1, 2]
ramp = ["32,32,20000"]
overlap_grad_reduce = [true]
distributed_optimizer = [true]
precision = ["bf16"]
lr = [6e-4]
"""


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def _plan_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("plan: "))


def test_simulate_then_dry_run_submits_exactly_the_plan(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    assert main(["simulate", str(grid), "--out", "plan.csv"]) == 0
    simulated = _plan_line(capsys.readouterr().out)
    before = _files(tmp_path)
    for source in (str(grid), "plan.csv"):
        assert main(["submit", source, "--time", "01:00:00", "--runs-dir", "runs", "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert _plan_line(out) == simulated
        assert "#!/usr/bin/env bash" in out and "#SBATCH --nodes=1" in out  # the rendered script is shown
    assert main(["submit", "plan.csv", "--time", "01:00:00", "--dry-run", "--show-configs"]) == 0
    shown = capsys.readouterr().out
    assert shown.count("[parallel]") == int(simulated.split()[1])  # one RunSpec per planned run
    for line in ('ramp = {shape = "staircase", start = 32, incr = 32, ramp_samples = 20000}', "overlap_grad_reduce = true", "distributed_optimizer = true",
                 'precision = "bf16"'):
        assert shown.count(line) == int(simulated.split()[1]), line
    assert _files(tmp_path) == before  # nothing written by any dry run

    table = run_grid(load_grid(grid))
    surviving_points = {tuple(str(table[c][i]) for c in POINT_COLUMNS) for i in np.flatnonzero(table["survives"])}
    runs = plan_runs(table, SubmitSettings(runs_dir=tmp_path / "runs", base_config="tiny-cpu", time="01:00:00"))
    assert len(runs) == len(surviving_points) == 4
    assert f"plan: {len(runs)} runs" in simulated
    for r in runs:
        c = r["config"]
        assert c.train.ramp == RampSpec.from_config("32,32,20000")
        assert c.parallel.overlap_grad_reduce and c.parallel.distributed_optimizer
        assert c.train.precision == "bf16" and c.train.lr == 6e-4
        assert c.system.name == "h100-sxm" and c.system.gpus_per_node == 8
        assert c.train.steps == 0 and c.train.tokens > 0
        i = r["row"]
        assert (c.parallel.tp, c.parallel.pp, c.parallel.micro_batch) == \
            (int(table["tp"][i]), int(table["pp"][i]), int(table["micro_batch"][i]))
    # --all-layouts launches every surviving layout
    every = plan_rows(table, all_layouts=True)
    assert len(every) == int(np.sum(table["survives"])) >= len(runs)


def test_written_run_toml_is_the_planned_runspec(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    table = run_grid(load_grid(grid))
    s = SubmitSettings(runs_dir=tmp_path / "runs", base_config="tiny-cpu", time="01:00:00")
    runs = plan_runs(table, s)
    write_runs(runs, s, 1, "#!/bin/sh\n")
    from batchlaw.simulator.runconfig import load_run_config

    for r in runs:
        assert load_run_config(r["dir"] / "run.toml") == r["config"]
        assert tomllib.loads((r["dir"] / "run.toml").read_text())["train"]["ramp"] == \
            {"shape": "staircase", "start": 32, "incr": 32, "ramp_samples": 20000}


def test_planned_columns_cannot_be_overridden_at_submit(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    table = run_grid(load_grid(grid))
    s = SubmitSettings(runs_dir=tmp_path / "runs", base_config="tiny-cpu", time="01:00:00",
                       overrides=("parallel.tp=4",))
    with pytest.raises(ValueError, match="^--set parallel.tp: a planned column"):
        plan_runs(table, s)


def test_simulate_system_is_honoured(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    assert main(["simulate", str(grid), "--system", "a100-80gb", "--out", str(tmp_path / "a.csv")]) == 0
    out = capsys.readouterr().out
    assert "on a100-80gb" in out
    assert set((tmp_path / "a.csv").read_text().splitlines()[1].split(",")) >= {"a100-80gb"}
    assert main(["submit", str(tmp_path / "a.csv"), "--time", "01:00:00", "--dry-run"]) == 0
    assert _plan_line(capsys.readouterr().out) == _plan_line(out)
    assert not os.path.exists("runs")


def _count_builds(monkeypatch, module):
    """Count the RunSpecs built from table rows by ``module`` (a spy around the real ``spec_from_row``)."""
    from batchlaw.simulator.plan import spec_from_row

    calls = []

    def spy(row, base=None):
        calls.append(1)
        return spec_from_row(row, base)

    monkeypatch.setattr(module, "spec_from_row", spy)
    return calls


def test_submit_planner_builds_each_runspec_once(tmp_path, monkeypatch):
    from batchlaw.tools import submit as submit_module

    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    table = run_grid(load_grid(grid))
    calls = _count_builds(monkeypatch, submit_module)
    runs = plan_runs(table, SubmitSettings(runs_dir=tmp_path / "runs", base_config="tiny-cpu", time="01:00:00"))
    assert len(calls) == len(runs) == len(plan_rows(table))
    for r in runs:  # the run folder is still the one the spec logs and checkpoints into
        assert r["config"].log.path == str(r["dir"] / "log.h5") and r["config"].checkpoint.dir == str(r["dir"] / "ckpt")


def test_demo_planner_builds_each_runspec_once(tmp_path, monkeypatch):
    from batchlaw.simulator import plan
    from batchlaw.simulator.runconfig import load_run_config
    from batchlaw.tools import demo_cmd

    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    table = run_grid(load_grid(grid))
    calls = _count_builds(monkeypatch, plan)  # demo_cmd imports it at the call
    dirs = demo_cmd.plan_demo_runs(table, tmp_path, tmp_path / "data", "tiny-cpu")
    assert len(calls) == len(dirs) == len(plan_rows(table))
    for d in dirs:
        spec = load_run_config(d / "run.toml")
        assert spec.log.path == str(d / "log.h5") and spec.log.done_marker == str(d / "COMPLETED")
        assert spec.data.path == str(tmp_path / "data") and spec.train.warmup_samples == spec.total_samples() // 10


def test_submit_refuses_what_would_launch_other_than_the_plan(tmp_path, capsys, monkeypatch):
    """Session-5 audit: a CSV copied without its .resolved.json lost the grid's base config silently, the
    GPU request was not tied to the ranks per node, --set train.steps was ignored, and a signal lead at
    or over the time limit would signal (and requeue) before training started."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "grid.toml").write_text(GRID)
    assert main(["simulate", "grid.toml", "--out", "plan.csv"]) == 0
    capsys.readouterr()
    dry = ["--time", "01:00:00", "--dry-run"]
    assert main(["submit", "plan.csv", *dry]) == 0
    assert "#SBATCH --gpus-per-node=8" in capsys.readouterr().out  # a GPU plan asks for one GPU per rank
    assert main(["submit", "plan.csv", *dry, "--gpus-per-node", "0"]) == 0
    assert "--gpus-per-node" not in capsys.readouterr().out  # 0: whole-node clusters
    cases = [(["plan.csv", *dry, "--gpus-per-node", "4"], "--gpus-per-node = 4: the plan runs 8 ranks per node"),
             (["plan.csv", *dry, "--set", "train.steps=5"], "--set train.steps: a planned column"),
             (["plan.csv", "--time", "00:02:00", "--dry-run"], "--signal-lead = 120: must be shorter than --time"),
             (["plan.csv", "--time", "99:99:99", "--dry-run"], "--time = '99:99:99': required"),
             (["plan.csv", "--time", "1-24:00:00", "--dry-run"], "--time = '1-24:00:00'")]
    os.makedirs("alone")
    Path("alone/plan.csv").write_text(Path("plan.csv").read_text())
    cases.append((["alone/plan.csv", *dry], "alone/plan.csv: no plan.resolved.json beside it"))
    for args, message in cases:
        assert main(["submit", *args]) == 2, args
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, (args, err)
    assert main(["submit", "alone/plan.csv", *dry, "--base-config", "tiny-cpu"]) == 0  # the base named
    assert not os.path.exists("runs")


@pytest.mark.parametrize("text, seconds", [("90", 5400), ("90:30", 5430), ("04:00:00", 14400), ("48:00:00", 172800),
                                           ("1-0", 86400), ("1-02:03", 93780), ("2-00:00:01", 172801)])
def test_slurm_time_formats(text, seconds):
    from batchlaw.tools.submit import time_limit_s

    assert time_limit_s(text) == seconds


def test_a_plan_that_names_no_gpu_system_asks_for_no_gpus(tmp_path, capsys, monkeypatch):
    """Review of session 5: a hand-written CPU plan (no system column) got #SBATCH --gpus-per-node."""
    monkeypatch.chdir(tmp_path)
    Path("p.csv").write_text("model,global_batch,tp,pp,nodes,survives\ntiny,8,1,1,1,true\n")
    assert main(["submit", "p.csv", "--base-config", "tiny-cpu", "--time", "00:10:00", "--nproc-per-node", "2",
                 "--dry-run"]) == 0
    assert "--gpus-per-node" not in capsys.readouterr().out
    from batchlaw.tools.submit import render_sbatch

    with pytest.raises(ValueError, match="^--gpus-per-node = 4: the plan runs 8 ranks per node"):
        render_sbatch(SubmitSettings(runs_dir=tmp_path, base_config=None, time="01:00:00", gpus_per_node=4), 1)


def test_a_plan_with_a_gpu_column_asks_for_gpus(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("p.csv").write_text("model,global_batch,tp,pp,nodes,gpu,survives\ntiny,8,1,1,1,H100,true\n")
    assert main(["submit", "p.csv", "--base-config", "tiny-cpu", "--time", "00:10:00", "--nproc-per-node", "2",
                 "--dry-run"]) == 0
    assert "#SBATCH --gpus-per-node=2" in capsys.readouterr().out
