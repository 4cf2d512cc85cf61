"""Tier (a), pure (no torch): the run-config contract of `batchlaw train` (configs/runs/*.toml).

The key names are a contract shared with the simulator's grid columns, the SLURM scripts and the
benchmarks: parallel.tp/pp/vpp/micro_batch/sequence_parallel/distributed_optimizer/
overlap_grad_reduce, train.global_batch/ramp/steps/tokens/seed/lr, log.path.
"""

from __future__ import annotations

import math

import pytest

from batchlaw.simulator.runconfig import RunSpec, load_run_config
from batchlaw.simulator.spec import CONFIG_ROOT, Infeasible, load_model, validate_run

TINY = CONFIG_ROOT / "runs" / "tiny-cpu.toml"
H100 = CONFIG_ROOT / "runs" / "gpt-180m-h100.toml"


def test_contract_keys_exist_and_override():
    cfg = load_run_config(TINY, [
        "parallel.tp=2", "parallel.pp=2", "parallel.vpp=1", "parallel.micro_batch=1",
        "parallel.sequence_parallel=false", "parallel.distributed_optimizer=true",
        "parallel.overlap_grad_reduce=true", "train.global_batch=16", "train.ramp='4,4,64'",
        "train.steps=3", "train.seed=7", "train.lr=1e-4", "train.min_lr=1e-5",
        "log.path='x.h5'"])
    p, t = cfg.parallel, cfg.train
    assert (p.tp, p.pp, p.vpp, p.micro_batch) == (2, 2, 1, 1)
    assert p.distributed_optimizer and p.overlap_grad_reduce and not p.sequence_parallel
    assert (t.global_batch, t.ramp.text, t.steps, t.seed, t.lr) == \
        (16, '{shape = "staircase", start = 4, incr = 4, ramp_samples = 64}', 3, 7, 1e-4)
    assert cfg.log.path == "x.h5"


def test_tiny_cpu_is_the_tiny_model_and_layout_neutral():
    cfg = load_run_config(TINY)
    assert isinstance(cfg, RunSpec)
    assert cfg.model == load_model("tiny")  # model.name resolves to configs/models/tiny.toml
    # the layouts the distributed tests run must all be valid for the shipped tiny config
    for world, tp, pp in [(1, 1, 1), (2, 2, 1), (2, 1, 2), (2, 1, 1), (4, 2, 2), (4, 2, 1), (4, 1, 2)]:
        par = load_run_config(TINY, [f"parallel.tp={tp}", f"parallel.pp={pp}"]).parallel
        dp = validate_run(cfg.model, par, world_size=world, global_batch=cfg.train.global_batch)
        assert dp == world // (tp * pp)  # DP = world size / (TP x PP)


def test_model_name_with_overrides_and_inline_model():
    cfg = load_run_config(TINY, ["model.name='gpt-180m'", "model.seq_len=1024"])
    assert cfg.model.layers == 14 and cfg.model.hidden == 768 and cfg.model.seq_len == 1024
    inline = load_run_config(None, ["model.layers=2", "model.hidden=32", "model.heads=2", "train.global_batch=4",
                                    "train.steps=1"])
    assert inline.model.name == "custom" and inline.model.layers == 2


def test_token_budget_in_samples():
    cfg = load_run_config(H100)
    assert cfg.train.steps == 0 and cfg.model.seq_len == 2048
    assert cfg.total_samples() == math.ceil(8.8e9 / 2048)
    assert validate_run(cfg.model, cfg.parallel, world_size=8, global_batch=cfg.train.global_batch) == 8


@pytest.mark.parametrize("override, message", [
    ("parallel.tpp=2", "parallel.tpp: unknown key; valid keys are distributed_optimizer, micro_batch"),
    ("train.lrr=1", "train.lrr: unknown key; valid keys are"),
    ("parallel.tp='two'", "parallel.tp = 'two': expected int"),
    ("train.decay='exp'", "train.decay = 'exp': expected one of 'cosine', 'linear', 'constant'"),
    ("parallel.micro_batch=0", "parallel.micro_batch = 0: must be a positive integer"),
    ("train.tokens='8.8Q'", "train.tokens = '8.8Q'"),
    ("data.kind='indexed'", "data.path = '': kind = 'indexed' needs the dataset prefix"),
])
def test_user_mistakes_are_one_line_value_errors(override, message):
    with pytest.raises(ValueError) as err:
        load_run_config(TINY, [override, "train.steps=0"] if "tokens" in override else [override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_steps_or_tokens_required():
    with pytest.raises(ValueError, match="train.steps = 0 and train.tokens = 0"):
        load_run_config(TINY, ["train.steps=0"])


def test_layout_rules_are_the_simulators():
    cfg = load_run_config(TINY)
    with pytest.raises(Infeasible, match="global batch 8 not divisible by micro_batch x dp = 6"):
        validate_run(cfg.model, cfg.parallel, world_size=3, global_batch=8)
    with pytest.raises(Infeasible, match="heads 4 not divisible by tp 3"):
        validate_run(cfg.model, load_run_config(TINY, ["parallel.tp=3"]).parallel, world_size=3, global_batch=6)
    with pytest.raises(Infeasible, match="layers 4 not divisible by pp x vpp = 3"):
        validate_run(cfg.model, load_run_config(TINY, ["parallel.pp=3"]).parallel, world_size=3, global_batch=6)


@pytest.mark.parametrize("sets, world, batch, message", [
    # issue 21: the messages named the broken rule but not the values that would work
    (["parallel.tp=3"], 3, 6, "heads 4 not divisible by tp 3; tp can be 1, 2, 4 (the common divisors of the head and"
                              " query-group counts)"),
    (["parallel.pp=3"], 3, 6, "layers 4 not divisible by pp x vpp = 3; pp x vpp can be 1, 2, 4 (divisors of layers)"),
    (["parallel.micro_batch=2"], 3, 8, "global batch 8 not divisible by micro_batch x dp = 6; global batch can be 6 or 12"),
    (["parallel.micro_batch=4"], 1, 10, "global batch can be 8 or 12, or micro_batch 1, 2, 5, 10 (divisors of the 10"
                                        " sequences per DP rank)"),
    (["parallel.tp=2"], 3, 6, "world size 3 is not divisible by tp x pp = 2; tp x pp can be 1, 3 (its divisors)"),
])
def test_layout_errors_list_the_values_that_would_work(sets, world, batch, message):
    cfg = load_run_config(TINY, sets)
    with pytest.raises(Infeasible) as err:
        validate_run(cfg.model, cfg.parallel, world_size=world, global_batch=batch)
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_batchlaw_train_checks_the_ramp_before_launch(capsys):
    from batchlaw.tools.cli import main

    args = ["train", str(TINY), "--nproc-per-node", "2", "--print-command"]
    assert main(args + ["--set", "train.ramp='4,4,8'"]) == 0
    assert main(args + ["--set", "train.ramp='3,3,8'"]) == 2
    assert "ramp.start = 3: must be a positive multiple of micro_batch x dp = 4" in capsys.readouterr().err
