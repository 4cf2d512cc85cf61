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


HOSTILE = ['q"uote\\back', "line\nbreak\r\n", "nul\x00esc\x1b[31mdel\x7f", "tab\tform\x0cbell\x07",
           "caf\u00e9 \u4e2d \U0001F680", "'single' \"\"\"triple\"\"\" [table] # hash = eq", "\u2028sep\x85"]


@pytest.mark.parametrize("text", HOSTILE)
def test_system_profiles_are_written_by_the_one_toml_writer(tmp_path, text):
    """save_system had its own TOML writer that escaped only quotes and backslashes: a newline or a control
    character in a profile's strings or comment (calibrate records the log folder in both) wrote a file no TOML
    reader accepts. Now it goes through config.to_toml; hostile strings round-trip through tomllib."""
    import dataclasses
    import tomllib

    from batchlaw.simulator.system import Calibration, load_system, save_system

    printable = all(ch.isprintable() for ch in text)  # a profile name refuses control characters itself
    prof = dataclasses.replace(load_system("h100-sxm"), name=f"my-{text}" if printable else "my-profile",
                               calibration=Calibration(fitted_on=f"12 runs in {text}", n_rows=12, params=("overhead_s",),
                                                       stderr=(0.01,), fixed=text))
    path = tmp_path / "p.toml"
    save_system(prof, path, comment=f"Calibrated on 12 runs in {text}.\nsecond line")
    raw = path.read_text()
    assert raw.isascii()
    assert tomllib.loads(raw) == config.to_dict({"system": {k: v for k, v in config.to_dict(prof).items()
                                                            if k not in ("efficiency", "calibration")},
                                                 "efficiency": prof.efficiency, "calibration": prof.calibration})
    assert load_system(path) == prof
    assert [line for line in raw.splitlines() if line.startswith("#")][-1] == "# second line"


def test_the_toml_writer_takes_numpy_scalars():
    """Fitted values are often numpy scalars: np.float64 printed as 'np.float64(0.5)' and np.int64 as a
    quoted string."""
    import tomllib

    import numpy as np

    out = config.to_toml({"t": {"f": np.float64(0.5), "i": np.int64(3), "b": np.bool_(True), "l": [np.float32(2.0)]}})
    assert tomllib.loads(out) == {"t": {"f": 0.5, "i": 3, "b": True, "l": [2.0]}}
