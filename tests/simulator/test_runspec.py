"""Tier (a), pure: RunSpec is one description of a run: run.toml and the logged JSON read back to the
same RunSpec through the strict loader, grid rows map to RunSpecs by field name, defaults have one
source, and bad input gets a one-line error."""

import json

import numpy as np
import pytest

from batchlaw.simulator import config
from batchlaw.simulator.plan import PLAN_COLUMNS, spec_from_row, spec_to_row
from batchlaw.simulator.rampspec import RampSpec
from batchlaw.simulator.runconfig import RunSpec, load_run_config, spec_from_dict
from batchlaw.simulator.spec import ModelShape, Parallelism
from batchlaw.simulator.table import normalise


@pytest.mark.parametrize("name,sets", [
    ("tiny-cpu", []),
    ("gpt-180m-h100", ["train.ramp=\"64,64,100000\""]),
    ("tiny-cpu", ['train.ramp={shape = "doubling", start = 4, every_tokens = "1K"}', "system.name=cpu-gloo"]),
])
def test_run_toml_and_logged_json_read_back_to_the_same_runspec(tmp_path, name, sets):
    spec = load_run_config(name, sets)
    f = tmp_path / "run.toml"
    f.write_text(config.to_toml(spec))
    assert load_run_config(f) == spec
    assert spec_from_dict(json.loads(config.to_json(spec))) == spec  # the HDF5 ``config`` attribute
    assert spec_from_row(spec_to_row(spec), spec) == spec


def test_logged_config_has_no_unreadable_extras():
    data = json.loads(config.to_json(load_run_config("tiny-cpu")))
    with pytest.raises(ValueError, match="^_device: unknown key; valid keys are"):
        spec_from_dict({**data, "_device": "cpu"})


def test_ramp_tables_are_strict_per_shape():
    bad = 'train.ramp={shape="doubling", incr=8, hysteresis=9, schedule="0:8"}'
    with pytest.raises(ValueError) as exc:
        load_run_config("tiny-cpu", [bad])
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg == "train.ramp.incr = 8: not used by shape 'doubling'; its keys are shape, start, every_tokens"
    spec = load_run_config("tiny-cpu", ['train.ramp={shape="staircase", start=4, incr=2, ramp_samples=64}'])
    assert isinstance(spec.train.ramp, RampSpec) and spec.train.ramp.incr == 2


def test_unknown_model_name_lists_shipped_models():
    with pytest.raises(ValueError) as exc:
        load_run_config("tiny-cpu", ["model.name=gpt-13b"])
    msg = str(exc.value)
    assert msg.startswith("model.name = 'gpt-13b': unknown; shipped models are ") and "gpt-180m" in msg
    assert "\n" not in msg


def test_plan_columns_are_the_field_names():
    spec = load_run_config("gpt-180m-h100")
    row = spec_to_row(spec)
    assert set(row) == set(PLAN_COLUMNS)
    for col, (section, name) in PLAN_COLUMNS.items():
        assert col == (section if name == "name" else name)
    # a row with a different model replaces the base's shape entirely (no leftovers of the base model)
    other = spec_from_row({"model": "gpt-360m", "global_batch": 512.0, "tp": "2", "overlap_grad_reduce": "false",
                           "tokens": 1e9}, spec)
    assert other.model == load_run_config("tiny-cpu", ["model.name=gpt-360m"]).model
    assert (other.parallel.tp, other.parallel.overlap_grad_reduce, other.train.tokens, other.train.steps) == \
        (2, False, 10**9, 0)


def test_defaults_have_one_source():
    # the pruner's defaults for missing columns are the dataclasses' (issue 9: gelu vs swiglu, 4h vs 8h/3,
    # overlap_grad_reduce true vs false)
    c = normalise({"layers": [2], "hidden": [768], "heads": [12], "seq_len": [128], "vocab": [1000], "tp": [1],
                   "pp": [1], "global_batch": [8], "gpus": [1]})
    m, p = ModelShape(layers=2, hidden=768, heads=12), Parallelism()
    assert bool(c["gated"][0]) == (m.activation == "swiglu")
    assert c["ffn_hidden"][0] == m.ffn
    assert bool(c["overlap_grad_reduce"][0]) == p.overlap_grad_reduce
    assert bool(c["distributed_optimizer"][0]) == p.distributed_optimizer
    sw = normalise({"layers": [2], "hidden": [768], "heads": [12], "seq_len": [128], "vocab": [1000], "tp": [1],
                    "pp": [1], "global_batch": [8], "gpus": [1], "activation": ["swiglu"]})
    assert sw["ffn_hidden"][0] == ModelShape(layers=2, hidden=768, heads=12, activation="swiglu").ffn == 2048
    assert np.all(sw["gated"])
