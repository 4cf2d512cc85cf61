"""Tier (a), pure: every bad input of issue 13 ("Validation") is refused before launch with ONE line
naming the field, the value and what is allowed, or (rows of a runs table) made infeasible with a
reason. Each case is a reproduction from the issue; on the commit before simulator/checks.py each of
them was accepted, reached the ranks, or raised a traceback."""

import math
import tomllib

import numpy as np
import pytest

from batchlaw.simulator import config
from batchlaw.simulator.grid import load_grid
from batchlaw.simulator.runconfig import load_run_config
from batchlaw.simulator.spec import ModelShape, Parallelism, SystemSpec
from batchlaw.simulator.system import load_system
from batchlaw.simulator.table import predict_table
from batchlaw.tools.cli import main

RUN = "configs/runs/tiny-cpu.toml"


def _refused(overrides, field, match=""):
    """load_run_config refuses ``overrides`` with one ValueError line that names ``field``."""
    with pytest.raises(ValueError) as info:
        load_run_config(RUN, overrides)
    text = str(info.value)
    assert "\n" not in text and field in text and match in text, text
    return text


@pytest.mark.parametrize("overrides, field, allowed", [
    (["train.lr=nan"], "train.lr", "finite number > 0"),
    (["train.lr=-1"], "train.lr", "finite number > 0"),
    (["train.lr=inf"], "train.lr", "finite number > 0"),  # ran to a NaN loss and exit 0
    (["train.warmup_samples=-100"], "train.warmup_samples", ">= 0"),
    (["train.seed=-1"], "train.seed", "[0, 2^32)"),
    (["train.seed=9223372036854775807"], "train.seed", "[0, 2^32)"),
    (["log.flush_every=0"], "log.flush_every", ">= 1"),
    (["model.ffn_hidden=-5"], "model.ffn_hidden", ">= 0"),
    (["train.adam_beta2=2.0"], "train.adam_beta2", "< 1"),
    (["train.weight_decay=-1"], "train.weight_decay", ">= 0"),
    (["train.eval_every=5", "train.eval_batches=0"], "train.eval_batches", ">= 1"),
    (["train.min_lr=0.01"], "train.min_lr", "<= train.lr"),  # LR climbed during "decay"
    (["train.clip_grad=nan"], "train.clip_grad", "finite"),
    (["train.loss_scale_init=0"], "train.loss_scale_init", "finite"),
    (["train.loss_scale_init=inf"], "train.loss_scale_init", "finite"),
    (["checkpoint.every=-1"], "checkpoint.every", ">= 0"),  # acted every step
    (["train.eval_every=-1"], "train.eval_every", ">= 0"),
    (["checkpoint.keep=0"], "checkpoint.keep", ">= 1"),  # never pruned
    (['log.path="runs/a\\u0000b/log.h5"'], "log.path", "U+0000"),
    (['checkpoint.dir="runs/\\u001b[2Jx"'], "checkpoint.dir", "U+001B"),
    (["data.valid_fraction=1.5"], "data.valid_fraction", "< 1"),
])
def test_run_field_refused(overrides, field, allowed):
    _refused(overrides, field, allowed)


def test_seq_len_limit_states_the_cost():
    text = _refused(["model.seq_len=1000000"], "model.seq_len", "<= 32768")
    assert "GiB" in text


def test_step_count_limit_states_the_cost():
    """train.steps = 1e12 passed and hung before the first step (the schedule loops over every step)."""
    text = _refused(["train.steps=1000000000000"], "train.steps", "1,000,000,000,000 steps")
    # tiny: 8 x 64 tokens per step; 6 N D with the tiny model's exact count is stated as FLOPs
    assert "5.12e+14 tokens" in text and "FLOPs" in text and "GPU-hours" in text
    text = _refused(["train.steps=0", "train.tokens=1000T"], "train.tokens", "steps")


def test_steps_and_tokens_together_are_refused():
    """Issue 21: train.steps and train.tokens together were accepted and steps won silently."""
    text = _refused(["train.tokens=1M"], "train.steps", "train.tokens = ")
    assert "--set train.tokens=0" in text and "train.steps=0" in text
    assert load_run_config(RUN, ["train.tokens=1M", "train.steps=0"]).train.steps == 0  # either bound alone


def test_limits_are_inclusive_of_sane_runs():
    cfg = load_run_config(RUN, ["train.seed=4294967295", "train.min_lr=0.003", "train.adam_beta2=0.0",
                                "checkpoint.keep=1", "train.clip_grad=0", "train.steps=10000000"])
    assert cfg.train.seed == 2**32 - 1 and cfg.train.min_lr == cfg.train.lr


def test_model_name_is_not_a_path():
    """--set model.name=../systems/h100-sxm read a system file as a model (KeyError traceback)."""
    _refused(["model.name=../systems/h100-sxm"], "model.name", "no '/'")
    _refused(["model=3"], "model", "must be a table")


def _train(capsys, *sets):
    args = ["train", RUN, "--print-command"]
    for s in sets:
        args += ["--set", s]
    status = main(args)
    err = capsys.readouterr().err.strip()
    return status, err


def test_prelaunch_sequence_parallel_on_cpu(capsys, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    status, err = _train(capsys, "parallel.sequence_parallel=true")
    assert status == 2 and "parallel.sequence_parallel = True" in err and "\n" not in err


def test_prelaunch_missing_indexed_dataset(capsys, tmp_path):
    status, err = _train(capsys, "data.kind=indexed", f"data.path={tmp_path / 'corpus'}")
    assert status == 2 and "data.path" in err and "corpus.bin is missing" in err and "\n" not in err


def test_prelaunch_checkpoint_dir_is_a_file(capsys, tmp_path):
    f = tmp_path / "ckpt"
    f.write_text("")
    status, err = _train(capsys, f"checkpoint.dir={f}")
    assert status == 2 and "checkpoint.dir" in err and "not a directory" in err
    status, err = _train(capsys, f"log.path={f}/sub/log.h5")
    assert status == 2 and "log.path" in err and "is a file" in err


def test_prelaunch_accepts_paths_to_be_created(capsys, tmp_path):
    status, err = _train(capsys, f"checkpoint.dir={tmp_path}/a/b/ckpt", f"log.path={tmp_path}/a/log.h5")
    assert status == 0, err
    assert not (tmp_path / "a").exists()  # the check creates nothing


def _table(**changes):
    row = dict(layers=2, hidden=64, heads=4, seq_len=64, vocab=512, tp=1, pp=1, dp=1, global_batch=8,
               micro_batch=2, gpu="cpu-gloo")
    cols = {k: np.array([v, v]) for k, v in row.items()}
    for k, v in changes.items():
        cols[k] = np.array([v, row[k]])  # row 0 is bad, row 1 is the good original
    return cols


@pytest.mark.parametrize("column, value", [("layers", 0), ("heads", -24), ("micro_batch", -2),
                                           ("hidden", math.nan), ("global_batch", math.inf), ("vocab", 0.5)])
def test_runs_table_impossible_values_are_infeasible(column, value):
    out = predict_table(_table(**{column: value}))
    assert not out["feasible"][0] and out["reason"][0].startswith(f"{column} = "), out["reason"][0]
    assert "positive integer" in out["reason"][0]
    assert out["feasible"][1], out["reason"][1]


@pytest.mark.parametrize("override, field", [
    ("grid.global_batch=[0, 8]", "grid.global_batch"), ("grid.micro_batch=[0]", "grid.micro_batch"),
    ("grid.tokens_per_param=nan", "grid.tokens_per_param"), ("grid.tokens_per_param=inf", "grid.tokens_per_param"),
    ("grid.tokens_per_param=-1", "grid.tokens_per_param"), ("grid.lr=[nan]", "grid.lr"),
    ("gpus_per_node=0", "gpus_per_node"), ("prune.dominance_margin=-0.1", "prune.dominance_margin"),
])
def test_grid_axes_refused(override, field):
    with pytest.raises(ValueError, match=rf"^{field} = ") as info:
        load_grid("configs/grids/tiny-cpu-demo.toml", [override])
    assert "\n" not in str(info.value)


def test_grid_size_refused_before_allocation():
    """A 1e9-point grid allocated 82 GiB before failing; the count is checked first and stated."""
    from batchlaw.simulator.grid import run_grid

    batches = "[" + ",".join(str(2 * i) for i in range(1, 10001)) + "]"
    lrs = "[" + ",".join(f"{i}e-6" for i in range(1, 1001)) + "]"
    g = load_grid("configs/grids/tiny-cpu-demo.toml", [f"grid.global_batch={batches}", f"grid.lr={lrs}"])
    with pytest.raises(ValueError, match=r"grid has 60,000,000 points \(model 3 x global_batch 10000 x lr 1000 x"
                                         r" tp 2\), over the limit of 1,000,000; it would take about [0-9.]+ GiB"):
        run_grid(g)


def _system(tmp_path, text):
    p = tmp_path / "sys.toml"
    p.write_text(text)
    return p


def test_system_without_system_table(tmp_path):
    """Was a KeyError traceback."""
    with pytest.raises(ValueError, match=r"sys.toml: no \[system\] table"):
        load_system(_system(tmp_path, "[efficiency]\nmatmul_max = 0.5\n"))
    with pytest.raises(ValueError, match=r"no \[system\] table"):
        load_system(_system(tmp_path, "system = 3\n"))


def test_system_memory_nan_refused(tmp_path):
    """memory_gib = nan skipped the memory check (every comparison with NaN is False)."""
    base = 'name = "x"\npeak_tflops = 100.0\nhbm_gbps = 1000.0\n'
    with pytest.raises(ValueError, match=r"system.memory_gib = nan: must be a finite number > 0"):
        load_system(_system(tmp_path, f"[system]\n{base}memory_gib = nan\n"))
    assert load_system(_system(tmp_path, f"[system]\n{base}memory_gib = 80\n")).memory_gib == 80.0


def test_deeply_nested_toml_is_one_line(tmp_path):
    """tomllib recursed into a RecursionError traceback."""
    p = tmp_path / "deep.toml"
    for text in ("a = " + "[" * 2000 + "]" * 2000, "a = " + "{b = " * 2000 + "1" + "}" * 2000,
                 "a = " + "[" * 40 + "]" * 40, "[" + ".".join(["t"] * 60) + "]\n"):
        p.write_text(text)
        with pytest.raises(ValueError, match=r"deep.toml'(: tables or arrays nested| is not valid TOML)") as info:
            load_run_config(p)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="nested"):
        config.apply_overrides({}, ["a=" + "[" * 2000 + "]" * 2000])


def test_not_utf8_toml_names_the_file(tmp_path):
    p = tmp_path / "latin1.toml"
    p.write_bytes(b'[model]\nname = "caf\xe9"\n')
    with pytest.raises(ValueError, match=r"latin1.toml' is not UTF-8 text \(byte 19\)"):
        load_run_config(p)


@pytest.mark.parametrize("text", ["runs/\U0001F680-emoji", "caf\u00e9 \u4e2d\u6587",
                                  'q"uote\\back\nnl\ttab\x00nul\x7f'])
def test_toml_writer_roundtrips_any_text(text):
    """An emoji in data.path was written as JSON surrogate pairs (\\ud83d\\ude80), which no TOML reader
    accepts: every task failed at start."""
    out = config.to_toml({"data": {"path": text}, "top": [text]})
    assert out.isascii()
    assert tomllib.loads(out) == {"data": {"path": text}, "top": [text]}


def test_toml_writer_refuses_lone_surrogate():
    bad = "runs/\udcff"  # an undecodable byte from argv under surrogateescape
    with pytest.raises(ValueError, match=r"data.path = .*lone surrogate U\+DCFF"):
        config.to_toml({"data": {"path": bad}})


@pytest.mark.parametrize("cell", ["inf", "nan", "0", "-8", "2.5", "many"])
def test_submit_row_with_impossible_batch(tmp_path, capsys, cell):
    """global_batch = inf in a pruned CSV was an OverflowError traceback in submit."""
    csv = tmp_path / "pruned.csv"
    csv.write_text(f"model,global_batch,tp,pp,micro_batch,nodes,survives\ntiny,{cell},1,1,2,1,true\n")
    status = main(["submit", str(csv), "--base-config", RUN, "--time", "00:10:00", "--nproc-per-node", "1",
                   "--dry-run", "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and err.startswith("batchlaw: error: row 0: global_batch = ") and "\n" not in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("override, match", [
    ("train.lr=1" + "0" * 400, "train.lr: an integer of 1329 bits, outside TOML's 64-bit integer range"),
    ("train.steps=1" + "0" * 400, "train.steps: an integer of 1329 bits"),
    ("model.name=1979-05-27", r"model.name = datetime.date\(1979, 5, 27\): must be a plain name"),
    ("data.path=1979-05-27T07:32:00Z", "data.path = datetime.datetime"),
    ("train.global_batch=1000000000000000000", "over the limit of 10,000,000 steps or 1e\\+15 tokens"),
])
def test_loader_odd_values_are_one_line(override, match):
    """Found by the fuzz test: huge integers were OverflowError tracebacks, TOML dates a TypeError."""
    with pytest.raises(ValueError, match=match) as info:
        load_run_config(RUN, [override])
    assert "\n" not in str(info.value)


def test_system_efficiency_of_the_op_level_model_refused(tmp_path):
    """hbm_eff = 0 divided by zero in the memory-bound term (every efficiency must be in (0, 1])."""
    base = '[system]\nname = "x"\npeak_tflops = 100.0\nhbm_gbps = 1000.0\nmemory_gib = 80\n'
    for key, value in (("hbm_eff", "0.0"), ("attention_eff", "nan"), ("fp8_matmul_max", "2.0"),
                       ("tp_exposed", "-1.0"), ("overhead_mb_s", "-0.1")):
        with pytest.raises(ValueError, match=rf"efficiency.{key} = "):
            load_system(_system(tmp_path, f"{base}[efficiency]\n{key} = {value}\n"))


@pytest.mark.parametrize("cell", [float("inf"), 2.5, "many"])
def test_runs_table_integer_cell_is_one_line(cell):
    """A seed of inf in a planned table was an OverflowError traceback from int(float(...)); a NaN cell is
    blank (the base run's seed)."""
    from batchlaw.simulator.plan import spec_from_row

    with pytest.raises(ValueError, match=r"^seed = .*: allowed is a whole number \(blank: the base run's value\)$"):
        spec_from_row({"model": "tiny", "global_batch": 8, "seed": cell, "steps": 1})
    assert spec_from_row({"model": "tiny", "global_batch": 8, "seed": float("nan"), "tokens": 100}).train.seed == 1234


def test_inline_ramp_table_nested_too_deeply_is_one_line():
    from batchlaw.simulator.rampspec import RampSpec

    with pytest.raises(ValueError, match="nested"):
        RampSpec.from_config("{shape = " + "[" * 200 + "]" * 200 + "}")


@pytest.mark.parametrize("make,message", [
    (lambda: ModelShape(layers=2.5, hidden=64, heads=4), "model.layers = 2.5: must be a positive integer"),
    (lambda: ModelShape(layers=True, hidden=64, heads=4), "model.layers = True: must be a positive integer"),
    (lambda: ModelShape(layers=2, hidden=64, heads=0), "model.heads = 0: must be a positive integer"),
    (lambda: ModelShape(layers=2, hidden=64, heads=3), "model.heads = 3: must divide model.hidden = 64"),
    (lambda: Parallelism(tp=1.5), "parallel.tp = 1.5: must be a positive integer"),
    (lambda: SystemSpec(nodes=0), "system.nodes = 0: must be a positive integer"),
])
def test_spec_sizes_are_checked_in_checks_py(make, message):
    """ModelShape, Parallelism and SystemSpec use the one positivity check of checks.py (a float or a
    bool count was accepted by their own copies)."""
    with pytest.raises(ValueError) as info:
        make()
    assert str(info.value) == message
    assert ModelShape(layers=np.int64(2), hidden=64, heads=4).layers == 2  # numpy integers stay accepted
