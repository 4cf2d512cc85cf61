"""Tier (a), pure: one name lookup (``resources.resolve``) behind every loader of a named config."""

import pytest

from batchlaw.simulator import resources
from batchlaw.simulator.grid import load_grid
from batchlaw.simulator.presets import load_preset
from batchlaw.simulator.runconfig import find_run_config
from batchlaw.simulator.spec import load_model
from batchlaw.simulator.system import load_system

# (loader, kind, field, what the listed names are called)
LOADERS = [
    (load_model, "models", "model", "shipped models"),
    (load_system, "systems", "system", "shipped profiles"),
    (load_grid, "grids", "grid", "shipped grids"),
    (load_preset, "laws", "law", "presets"),
    (find_run_config, "runs", "run config", "shipped run configs"),
]


def test_resolve_finds_shipped_and_passes_paths_through(tmp_path):
    assert resources.resolve("models", "gpt-180m", field="model") == resources.shipped_root() / "models/gpt-180m.toml"
    p = tmp_path / "mine.toml"
    assert resources.resolve("models", str(p), field="model") == p


def test_resolve_finds_user_config_first(tmp_path, monkeypatch):
    (tmp_path / "grids").mkdir()
    (tmp_path / "grids" / "my-grid.toml").write_text("")
    monkeypatch.setenv("BATCHLAW_CONFIG_PATH", str(tmp_path))
    assert resources.resolve("grids", "my-grid", field="grid") == tmp_path / "grids" / "my-grid.toml"
    with pytest.raises(ValueError, match="my-grid"):
        resources.resolve("grids", "nope", field="grid")


def test_resolve_rejects_unknown_kind():
    with pytest.raises(AssertionError):
        resources.resolve("model", "gpt-180m", field="model")


@pytest.mark.parametrize("loader,kind,field,label", LOADERS, ids=[k for _, k, _, _ in LOADERS])
def test_every_loader_names_field_value_and_allowed_names(loader, kind, field, label):
    with pytest.raises(ValueError) as exc:
        loader("no-such-name")
    names = ", ".join(resources.names(kind))
    assert str(exc.value) == f"{field} = 'no-such-name': unknown; {label} are {names} (or a TOML path)"


def test_inline_model_name_hint():
    from batchlaw.simulator.runconfig import load_run_config

    with pytest.raises(ValueError) as exc:
        load_run_config("tiny-cpu", ["model.name=gpt-13b"])
    names = ", ".join(resources.names("models"))
    assert str(exc.value) == (f"model.name = 'gpt-13b': unknown; shipped models are {names}"
                              " (or give layers, hidden, heads inline)")


def test_the_old_config_dir_variable_is_retired(tmp_path, monkeypatch, capsys):
    """$BATCHLAW_CONFIG_DIR was a hidden second spelling of $BATCHLAW_CONFIG_PATH; set, it now stops with one
    line naming the replacement instead of being searched silently."""
    from batchlaw.tools.cli import main

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "my-70m.toml").write_text('[model]\nname = "my-70m"\nlayers = 6\nhidden = 512\nheads = 8\n')
    monkeypatch.setenv("BATCHLAW_CONFIG_DIR", str(tmp_path))
    with pytest.raises(ValueError, match=r"BATCHLAW_CONFIG_DIR was retired; use BATCHLAW_CONFIG_PATH=DIR"):
        resources.find("models", "my-70m")
    assert main(["simulate", "--models"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "BATCHLAW_CONFIG_PATH" in err
