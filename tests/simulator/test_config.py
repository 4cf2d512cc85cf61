"""Tier (a), pure: the strict TOML loader and the shared specs."""

import pytest

from batchlaw.simulator import config
from batchlaw.simulator.spec import Infeasible, ModelShape, Parallelism, load_model, model_names, validate_run


def test_unknown_key_lists_valid_keys(tmp_path):
    p = tmp_path / "m.toml"
    p.write_text('[model]\nlayers = 2\nhidden = 8\nheads = 2\nhiden = 3\n')
    with pytest.raises(ValueError, match=r"model.hiden: unknown key; valid keys are .*hidden"):
        load_model(p)


def test_override_beats_file_and_type_checked(tmp_path):
    p = tmp_path / "m.toml"
    p.write_text('[model]\nlayers = 2\nhidden = 8\nheads = 2\n')
    assert load_model(p, ("model.layers=6",)).layers == 6
    with pytest.raises(ValueError, match=r"model.layers = 'six': expected int"):
        load_model(p, ("model.layers=six",))
    with pytest.raises(ValueError, match="activation = 'relu': expected one of 'swiglu', 'gelu'"):
        load_model(p, ("model.activation=relu",))


def test_bad_override_syntax():
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        config.apply_overrides({}, ["parallel.tp"])


def test_shipped_family_loads():
    names = model_names()
    for n in ("gpt-180m", "gpt-4b", "tiny"):
        assert n in names
    assert load_model("gpt-180m").hidden == 768
    with pytest.raises(ValueError, match="unknown; shipped models are"):
        load_model("gpt-7b")


def test_validate_run_rules():
    m = ModelShape(layers=4, hidden=64, heads=4)
    assert validate_run(m, Parallelism(tp=2, pp=2), world_size=8, global_batch=8) == 2
    with pytest.raises(Infeasible, match="not divisible by micro_batch x dp"):
        validate_run(m, Parallelism(micro_batch=3), world_size=2, global_batch=8)
    with pytest.raises(Infeasible, match="heads 4 not divisible by tp 8"):
        validate_run(m, Parallelism(tp=8), world_size=8, global_batch=8)
    with pytest.raises(Infeasible, match="layers 4 not divisible by pp x vpp"):
        validate_run(m, Parallelism(pp=2, vpp=4), world_size=2, global_batch=8)
    with pytest.raises(ValueError, match="parallel.tp = 0"):
        Parallelism(tp=0)
